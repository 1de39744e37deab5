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
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from enum import StrEnum
from typing import Protocol

from authz.audit.chain import AuditEntry

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

    def append(self, entries: Sequence[AuditEntry],
               dropped: Mapping[str, int] | None = None) -> object: ...


class AuditUnavailable(Exception):
    """A strict-mode entry could not be written: the decision must not be acted on."""


# (entry, the future of the submit call it came with (strict only), last of that call)
_Item = tuple[AuditEntry, "Future[None] | None", bool]
_DONE: Future[None] = Future()
_DONE.set_result(None)


class AuditWriter:
    """The queue and its flusher thread; `submit` is called on every decision."""

    def __init__(self, sink: Sink, mode: WriteMode = WriteMode.BATCHED, *, queue_size: int = 10_000,
                 when_full: WhenFull = WhenFull.BLOCK, max_batch: int = 1000,
                 flush_interval: float = 0.05, retry_delay: float = 0.5) -> None:
        self.sink = sink
        self.mode = mode
        self.queue_size = queue_size
        self.when_full = when_full
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.retry_delay = retry_delay
        self._q: deque[_Item] = deque()
        self._cv = threading.Condition()
        self._submitted = 0  # entries accepted into the queue (or dropped)
        self._settled = 0  # entries written, dropped, or failed
        self._flush_wanted = False
        self._stopping = False
        self._drops: Counter[str] = Counter()  # dropped, not yet written to the heads
        self.dropped = 0  # all drops since start
        self.written = 0
        self.failed = 0  # strict entries whose write failed (their calls failed too)
        self._thread: threading.Thread | None = None
        if mode != WriteMode.OFF:
            self._thread = threading.Thread(target=self._run, name="authz-audit", daemon=True)
            self._thread.start()

    # -- the hot path ------------------------------------------------------------------

    def submit(self, entries: Sequence[AuditEntry], wait: bool = True) -> Future[None] | None:
        """Queue entries. Returns a future done when they are recorded (strict) or at once
        (batched, off). With a full queue and the block policy (strict always blocks), waits
        for room, or returns None when `wait` is false so that the caller can wait elsewhere
        (the event loop must not block)."""
        if self.mode == WriteMode.OFF or not entries:
            return _DONE
        strict = self.mode == WriteMode.STRICT
        fut: Future[None] | None = Future() if strict else None
        with self._cv:
            if len(self._q) + len(entries) > self.queue_size:
                if self.when_full == WhenFull.DROP and not strict:
                    self._drop(entries)
                    return _DONE
                if not wait:
                    return None
                while len(self._q) + len(entries) > self.queue_size and not self._stopping:
                    self._flush_wanted = True
                    self._cv.notify_all()
                    self._cv.wait()
            last = len(entries) - 1
            for i, e in enumerate(entries):
                self._q.append((e, fut, i == last))
            self._submitted += len(entries)
            if strict or len(self._q) >= self.max_batch:
                self._cv.notify_all()
        return fut or _DONE

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
        """Write what is queued (up to `timeout`), then stop the flusher."""
        if self._thread is None:
            return
        if not self.flush(timeout):
            with self._cv:
                lost = len(self._q)
            log.error("audit writer closed with %d entries unwritten", lost)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)
        self._thread = None

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
            self._cv.wait(None if strict else self.flush_interval)
            if not strict and (self._q or self._drops):
                self._flush_wanted = True  # the interval is up: write what there is
        n = min(len(self._q), self.max_batch)
        batch = [self._q.popleft() for _ in range(n)]
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
        entries = [e for e, _, _ in batch]
        while True:
            try:
                self.sink.append(entries, drops)
                break
            except Exception as exc:
                if self.mode == WriteMode.STRICT:
                    log.error("audit write failed; failing %d waiting calls: %s", len(batch), exc)
                    with self._cv:
                        self.failed += len(batch)
                        self._drops.update(drops)
                        self._settled += len(batch)
                        self._cv.notify_all()
                    err = AuditUnavailable(f"the audit trail could not record the decision: {exc}")
                    for _, fut, _ in batch:
                        if fut is not None and not fut.done():
                            fut.set_exception(err)
                    return
                # Batched: the entries were acknowledged already; keep them and retry.
                log.error("audit write failed; retrying %d entries in %.1fs: %s",
                          len(batch), self.retry_delay, exc)
                with self._cv:
                    if self._stopping:
                        self.dropped += len(batch)
                        self._settled += len(batch)
                        self._cv.notify_all()
                        return
                    self._cv.wait(self.retry_delay)
        with self._cv:
            self.written += len(batch)
            self._settled += len(batch)
            self._cv.notify_all()
        if self.mode == WriteMode.STRICT:  # batched entries have no futures to settle
            for _, fut, last in batch:
                if fut is not None and last and not fut.done():
                    fut.set_result(None)
