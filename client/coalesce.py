"""Coalescing: concurrent single checks leave as one CheckBatch (issue 13).

A service answering many requests at once asks many questions at once; one CheckBatch
costs the server far less than N Checks. A check that finds nothing else in progress
goes straight out as Check (no added wait); one that arrives while other checks are in
flight joins a batch that leaves after at most `max_wait` seconds or `max_items`
questions. Answers go back in order; an item's error becomes the exception (or the
fail-closed deny) the same question asked alone would have given. Questions with a
`min_revision` always go alone: the server may wait up to 2 s for that revision and
must not hold a whole batch back for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from .errors import AuthzRpcError
from .types import CheckError, CheckQuery, CheckResult

#: At most this many items per CheckBatch (the server's documented limit).
SERVER_MAX_BATCH = 1000

One = Callable[[CheckQuery, "float | None"], CheckResult]
Many = Callable[[Sequence[CheckQuery], "float | None"], "list[CheckResult | CheckError]"]
AsyncOne = Callable[[CheckQuery, "float | None"], Awaitable[CheckResult]]
AsyncMany = Callable[[Sequence[CheckQuery], "float | None"],
                     Awaitable["list[CheckResult | CheckError]"]]


@dataclass(frozen=True, slots=True)
class Settings:
    """`enabled=False` sends every check as its own Check (h4's bench compares both)."""

    enabled: bool = True
    max_wait: float = 0.001  # seconds a batch waits for more questions
    max_items: int = 500  # a batch leaves as soon as it holds this many


@dataclass
class Stats:
    """What the coalescer sent: Check RPCs, CheckBatch RPCs, and questions in batches."""

    checks: int = 0
    batches: int = 0
    batched_items: int = 0


@dataclass(slots=True)
class _Item:
    """A question waiting for its answer: a thread's concurrent Future, or (asyncio) the
    loop's own Future, so that answering it needs no cross-thread wake-up."""

    query: CheckQuery
    timeout: float | None
    future: Future[CheckResult] | asyncio.Future[CheckResult] = field(default_factory=Future)


def _widest(timeouts: Sequence[float | None]) -> float | None:
    known = [t for t in timeouts if t is not None]
    return max(known) if len(known) == len(timeouts) and known else None


def _chunks(items: Sequence[_Item]) -> list[Sequence[_Item]]:
    return [items[i:i + SERVER_MAX_BATCH] for i in range(0, len(items), SERVER_MAX_BATCH)]


def _settle(items: Sequence[_Item], answers: Sequence[CheckResult | CheckError]) -> None:
    for item, answer in zip(items, answers, strict=True):
        if item.future.done():
            continue
        if isinstance(answer, CheckError):
            item.future.set_exception(AuthzRpcError.from_item(answer))
        else:
            item.future.set_result(answer)


def _fail(items: Sequence[_Item], exc: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)


class Coalescer:
    """For the blocking client: the first waiting thread gathers and sends the batch."""

    def __init__(self, one: One, many: Many, settings: Settings) -> None:
        self._one, self._many, self.settings = one, many, settings
        self.stats = Stats()
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)
        self._pending: list[_Item] = []
        self._busy = 0  # RPCs in flight
        self._gathering = False

    def check(self, q: CheckQuery, timeout: float | None) -> CheckResult:
        if not self.settings.enabled or q.min_revision > 0:
            return self._alone(q, timeout)
        with self._lock:
            if self._busy == 0 and not self._pending:
                self._busy += 1  # nothing else in progress: straight out as Check
                item = None
            else:
                item = _Item(q, timeout)
                self._pending.append(item)
                lead = not self._gathering
                self._gathering = True
                if len(self._pending) >= self.settings.max_items:
                    self._more.notify()
        if item is None:
            try:
                self._count(checks=1)
                return self._one(q, timeout)
            finally:
                with self._lock:
                    self._busy -= 1
        if lead:
            self._lead()
        assert isinstance(item.future, Future)
        return item.future.result()

    def _alone(self, q: CheckQuery, timeout: float | None) -> CheckResult:
        self._count(checks=1)
        return self._one(q, timeout)

    def _count(self, checks: int = 0, batches: int = 0, items: int = 0) -> None:
        with self._lock:
            self.stats.checks += checks
            self.stats.batches += batches
            self.stats.batched_items += items

    def _lead(self) -> None:
        with self._lock:
            end = time.monotonic() + self.settings.max_wait
            while len(self._pending) < self.settings.max_items:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._more.wait(left)
            batch, self._pending = self._pending, []
            self._gathering = False
            self._busy += 1
        try:
            self._send(batch)
        finally:
            with self._lock:
                self._busy -= 1

    def _send(self, batch: Sequence[_Item]) -> None:
        try:
            if len(batch) == 1:
                item = batch[0]
                self._count(checks=1)
                item.future.set_result(self._one(item.query, item.timeout))
                return
            for chunk in _chunks(batch):
                self._count(batches=1, items=len(chunk))
                _settle(chunk, self._many([i.query for i in chunk],
                                          _widest([i.timeout for i in chunk])))
        except BaseException as exc:  # every waiting caller gets the outcome, never a hang
            _fail(batch, exc)


class AsyncCoalescer:
    """For the asyncio client: questions asked in the same loop turn share a batch."""

    def __init__(self, one: AsyncOne, many: AsyncMany, settings: Settings) -> None:
        self._one, self._many, self.settings = one, many, settings
        self.stats = Stats()
        self._pending: list[_Item] = []
        self._busy = 0
        self._timer: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def check(self, q: CheckQuery, timeout: float | None) -> CheckResult:
        if not self.settings.enabled or q.min_revision > 0:
            self.stats.checks += 1
            return await self._one(q, timeout)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CheckResult] = loop.create_future()
        item = _Item(q, timeout, future)
        self._pending.append(item)
        if len(self._pending) >= self.settings.max_items:
            self._flush()
        elif len(self._pending) == 1:
            # Idle: leave after this loop turn (questions asked in it join); busy: wait a
            # little for more.
            self._timer = (loop.call_soon(self._flush) if self._busy == 0
                           else loop.call_later(self.settings.max_wait, self._flush))
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: Sequence[_Item]) -> None:
        try:
            if len(batch) == 1:
                item = batch[0]
                self.stats.checks += 1
                result = await self._one(item.query, item.timeout)
                if not item.future.done():
                    item.future.set_result(result)
                return
            for chunk in _chunks(batch):
                self.stats.batches += 1
                self.stats.batched_items += len(chunk)
                _settle(chunk, await self._many([i.query for i in chunk],
                                                _widest([i.timeout for i in chunk])))
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._busy -= 1
