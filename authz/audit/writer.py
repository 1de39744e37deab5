"""Getting audit entries from the decision path into the store, in one of three modes.

- strict: the answer waits until its entry is committed. Entries still go through the
  queue, so concurrent Checks share one transaction (group commit): a commit per batch,
  not per Check. A failed write fails the waiting calls: no answer leaves unrecorded.
- batched (default): the caller appends to a bounded queue and answers at once; a
  background thread writes a batch every `flush_interval`. The hot path is a lock and a
  deque append, never a database write. When the queue is full, `when_full` applies:
  "block" (callers wait for room; nothing is lost) or "drop" (the entry is dropped and
  counted, per organization, and the count is written to the organization's head row,
  so loss shows in `audit verify`: never silent).
- off: nothing is recorded (benchmarks, tests).

What survives a crash: strict, every acknowledged decision; batched, all but the last
`flush_interval` or so of entries. The store itself (append, seal) is behind `Sink`.

Poison is isolated: a batch the store refuses (its `refused` says the failure is about
the data, not the store being down) is split in halves, recursively, until the one entry
that fails alone is found. That entry is quarantined (kept apart with its reason,
counted) and everything else is written in order; in strict mode only the call that
brought the poisoned entry fails. A store that is down is retried (batched) or fails the
waiting calls (strict), never bisected into quarantine.

Nothing waits on the writer without a bound: `submit` takes a deadline for the wait for
room, and `close` ends within its timeout even when the store hangs (the thread is a
daemon; what it did not write is logged and, in strict mode, failed, never acknowledged).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from enum import StrEnum
from typing import Protocol, TypeVar

from authz.audit.chain import AuditEntry, Unsealed

log = logging.getLogger("authz.audit")


class WriteMode(StrEnum):
    STRICT = "strict"
    BATCHED = "batched"
    OFF = "off"


class WhenFull(StrEnum):
    BLOCK = "block"
    DROP = "drop"


class Sink(Protocol):
    """Where batches go: authz.store.audit.AuditStore."""

    def append(self, entries: Sequence[Unsealed],
               dropped: Mapping[str, int] | None = None) -> object: ...

    def refused(self, exc: Exception) -> str:
        """Why the store refused the data of a write that raised `exc` (a stable class a
        client may see), or "" when the failure is the store's own (down, locked, timed
        out): only refused writes are split to find the poisoned entry."""
        ...

    def quarantine(self, refused: Sequence[tuple[AuditEntry, str, str]]) -> None:
        """Keep (entry, reason, detail) apart from the chain."""
        ...


class AuditUnavailable(Exception):
    """An entry could not be recorded (strict: written; any mode: queued) in time: the
    decision must not be acted on. The message is stable: no store text in it."""


class StoreDown(Exception):
    """A write failed for the store's own reason (not the data): retry or fail all."""


_U = TypeVar("_U", bound=Unsealed)


def isolate(sink: Sink, entries: Sequence[_U], idx: list[int], done: list[str | None],
            refused: list[tuple[_U, str, str]], todo: dict[str, dict[str, int]]) -> None:
    """Append the entries `idx` not yet done (done[i]: None to do, "" written, else why
    refused); on a refusal split them in halves until the entry refused alone is found
    (it goes to `refused`). `todo["drops"]` rides on the first append that succeeds.
    Raises StoreDown, with `done` saying what was written before."""
    idx = [i for i in idx if done[i] is None]
    if not idx:
        return
    try:
        sink.append([entries[i] for i in idx], todo["drops"] or None)
    except Exception as exc:
        why = sink.refused(exc)
        if not why:
            raise StoreDown(str(exc)) from exc
        if len(idx) == 1:
            e = entries[idx[0]]
            log.error("audit entry refused by the store, quarantined: org %r decision %r: %s",
                      e.org_id, e.decision_id, exc)
            done[idx[0]] = why
            refused.append((e, why, str(exc)))
            return
        half = len(idx) // 2
        isolate(sink, entries, idx[:half], done, refused, todo)
        isolate(sink, entries, idx[half:], done, refused, todo)
        return
    todo["drops"] = {}
    for i in idx:
        done[i] = ""


# (entry, the future of the submit call it came with (strict only), last of that call)
_Item = tuple[AuditEntry, "Future[None] | None", bool]
#: The future of entries recorded (or dropped, or off) at once: settled from the start,
#: so a caller can tell by identity that there is nothing to wait for (no lock taken).
RECORDED: Future[None] = Future()
RECORDED.set_result(None)
_DONE = RECORDED


class AuditWriter:
    """The queue and its flusher thread; `submit` is called on every decision."""

    def __init__(self, sink: Sink, mode: WriteMode = WriteMode.BATCHED, *, queue_size: int = 10_000,
                 when_full: WhenFull = WhenFull.BLOCK, max_batch: int = 1000,
                 flush_interval: float = 0.05, retry_delay: float = 0.5,
                 block_timeout: float = 10.0, max_lag: float = 1.0,
                 on_quarantine: Callable[[int], None] | None = None) -> None:
        self.sink = sink
        self.mode = mode
        self.queue_size = queue_size
        self.when_full = when_full
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.retry_delay = retry_delay
        self.block_timeout = block_timeout  # longest wait for room without a deadline
        self.max_lag = max_lag  # batched: the oldest queued entry's longest wait
        self.on_quarantine = on_quarantine  # metrics hook: entries quarantined
        self._q: deque[_Item] = deque()
        self._queued = 0  # entries ever taken out of the queue by the flusher
        self._stamps: deque[tuple[int, float]] = deque()  # (position of a submit's last entry, when)
        self._cv = threading.Condition()
        self._submitted = 0  # entries accepted into the queue (or dropped)
        self._settled = 0  # entries written, dropped, or failed
        self._flush_wanted = False
        self._stopping = False
        self._drops: Counter[str] = Counter()  # dropped, not yet written to the heads
        self.dropped = 0  # all drops since start
        self.written = 0
        self.failed = 0  # strict entries whose write failed (their calls failed too)
        self.quarantined = 0  # entries the store refused, kept apart (see Sink.quarantine)
        self.timed_out = 0  # entries refused because the queue had no room in time
        self._thread: threading.Thread | None = None
        if mode != WriteMode.OFF:
            self._thread = threading.Thread(target=self._run, name="authz-audit", daemon=True)
            self._thread.start()

    # -- the hot path ------------------------------------------------------------------

    def submit(self, entries: Sequence[AuditEntry], wait: bool = True,
               deadline: float | None = None) -> Future[None] | None:
        """Queue entries. Returns a future done when they are recorded (strict) or at once
        (batched, off). With a full queue and the block policy (strict always blocks), waits
        for room until `deadline` (time.monotonic; None: `block_timeout` from now), then
        raises AuditUnavailable; or returns None when `wait` is false so that the caller can
        wait elsewhere (the event loop must not block)."""
        if self.mode == WriteMode.OFF or not entries:
            return _DONE
        strict = self.mode == WriteMode.STRICT
        fut: Future[None] | None = Future() if strict else None
        with self._cv:
            if self._full(len(entries)):
                if self.when_full == WhenFull.DROP and not strict:
                    self._drop(entries)
                    return _DONE
                if not wait:
                    return None
                if deadline is None:
                    deadline = time.monotonic() + self.block_timeout
                while self._full(len(entries)) and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.timed_out += len(entries)
                        raise AuditUnavailable("the audit trail is not taking entries in time")
                    self._flush_wanted = True
                    self._cv.notify_all()
                    self._cv.wait(remaining)
            if self._stopping:
                raise AuditUnavailable("the server is stopping")
            was_empty = not self._q  # an idle flusher sleeps until the first entry
            last = len(entries) - 1
            for i, e in enumerate(entries):
                self._q.append((e, fut, i == last))
            self._submitted += len(entries)
            if not strict:
                self._stamps.append((self._queued + len(self._q), time.monotonic()))
            if strict or was_empty or len(self._q) >= self.max_batch:
                self._cv.notify_all()
        return fut or _DONE

    def _full(self, n: int) -> bool:
        """No room for `n` more entries: the queue would pass `queue_size` entries, or its
        oldest entry waits longer than `max_lag` (batched: what a kill can lose is bounded
        in count and in time)."""
        if len(self._q) + n > self.queue_size:
            return True
        return bool(self._stamps) and time.monotonic() - self._stamps[0][1] > self.max_lag

    def _drop(self, entries: Sequence[AuditEntry]) -> None:
        for e in entries:
            self._drops[e.org_id] += 1
        self.dropped += len(entries)
        self._submitted += len(entries)
        self._settled += len(entries)
        log.warning("audit queue full (%d): dropped %d entries (%d since start)",
                    self.queue_size, len(entries), self.dropped)

    # -- flushing ----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every entry submitted so far is settled; False on timeout."""
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            target = self._submitted
            self._flush_wanted = True
            self._cv.notify_all()
            while self._settled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the flusher; returns within about `timeout`
        even when the store hangs. Strict calls still waiting then fail (their entries
        may or may not be written: never acknowledged as recorded)."""
        if self._thread is None:
            return
        end = time.monotonic() + timeout
        if not self.flush(timeout):
            with self._cv:
                lost = len(self._q)
            log.error("audit writer closed with %d entries unwritten", lost)
        with self._cv:
            self._stopping = True
            left = list(self._q)
            self._q.clear()
            self._stamps.clear()
            self._settled += len(left)
            self._cv.notify_all()
        self._fail([fut for _, fut, _ in left], "the server stopped before the entry was recorded")
        self._thread.join(max(0.0, end - time.monotonic()))
        if self._thread.is_alive():
            log.error("audit writer still in a store call at close; abandoned (daemon thread)")
        self._thread = None

    @staticmethod
    def _fail(futures: Sequence[Future[None] | None], why: str) -> None:
        err = AuditUnavailable(why)
        for fut in futures:
            if fut is not None and not fut.done():
                with contextlib.suppress(InvalidStateError):  # settled meanwhile
                    fut.set_exception(err)

    def pending(self) -> int:
        with self._cv:
            return len(self._q)

    def _take(self) -> tuple[list[_Item], dict[str, int]] | None:
        """Under the lock: wait for work, then take a batch (None: stop)."""
        strict = self.mode == WriteMode.STRICT
        while True:
            if self._q and (strict or self._flush_wanted or len(self._q) >= self.max_batch):
                break
            if self._stopping and not self._q:
                return None
            if self._drops and not self._q and self._flush_wanted:
                break
            if not strict and not (self._q or self._drops):
                # No timer while there is nothing to write (an idle server burns no CPU
                # here): sleep until the first entry, then give the batch its interval.
                self._cv.wait()
                continue
            self._cv.wait(None if strict else self.flush_interval)
            if not strict and (self._q or self._drops):
                self._flush_wanted = True  # the interval is up: write what there is
        n = min(len(self._q), self.max_batch)
        batch = [self._q.popleft() for _ in range(n)]
        self._queued += n
        while self._stamps and self._stamps[0][0] <= self._queued:
            self._stamps.popleft()  # every entry of that submit is out of the queue
        drops = dict(self._drops)
        self._drops.clear()
        if not self._q:
            self._flush_wanted = False
        self._cv.notify_all()  # room for blocked submitters
        return batch, drops

    def _run(self) -> None:
        while True:
            with self._cv:
                taken = self._take()
            if taken is None:
                return
            batch, drops = taken
            self._write(batch, drops)

    def _write(self, batch: list[_Item], drops: dict[str, int]) -> None:
        """Write a batch, isolating poisoned entries; settle the strict calls."""
        done: list[str | None] = [None] * len(batch)  # "": written; text: quarantined (why)
        refused: list[tuple[AuditEntry, str, str]] = []
        todo = {"drops": drops}
        delay = self.retry_delay
        while True:
            try:
                isolate(self.sink, [e for e, _, _ in batch], list(range(len(batch))), done,
                        refused, todo)
                break
            except StoreDown as exc:
                left = [i for i, d in enumerate(done) if d is None]
                if self.mode == WriteMode.STRICT:
                    log.error("audit write failed; failing %d waiting calls: %s", len(left), exc)
                    with self._cv:
                        self.failed += len(left)
                        self._drops.update(todo["drops"])
                    self._fail([batch[i][1] for i in left],
                               "the audit trail could not record the decision")
                    break
                # Batched: the entries were acknowledged already; keep them and retry.
                log.error("audit write failed; retrying %d entries in %.1fs: %s",
                          len(left), delay, exc)
                with self._cv:
                    if self._stopping:
                        self.dropped += len(left)
                        break
                    self._cv.wait(delay)
                delay = min(delay * 2, 5.0)
        if refused:
            self._keep(refused)
        written = sum(1 for d in done if d == "")
        with self._cv:
            self.written += written
            self._settled += len(batch)
            self._cv.notify_all()
        if self.mode == WriteMode.STRICT:  # batched entries have no futures to settle
            for (_, fut, _), d in zip(batch, done, strict=True):
                if d:  # quarantined: only this entry's call fails
                    self._fail([fut], "the audit trail refused the decision's entry")
            for (_, fut, last), d in zip(batch, done, strict=True):
                if fut is not None and last and d == "" and not fut.done():
                    with contextlib.suppress(InvalidStateError):  # failed meanwhile (close)
                        fut.set_result(None)

    def _keep(self, refused: list[tuple[AuditEntry, str, str]]) -> None:
        """Quarantine refused entries; if even that fails, the log holds them."""
        try:
            self.sink.quarantine(refused)
        except Exception as exc:
            log.error("audit quarantine failed (%s); the refused entries: %r", exc,
                      [e for e, _, _ in refused])
        with self._cv:
            self.quarantined += len(refused)
        if self.on_quarantine is not None:
            self.on_quarantine(len(refused))
