"""Carries the local audit log (authz.audit.logwriter) to the store.

One shipper thread per server process ships that process's segments in order, in
batches, through the same poison isolation as the direct writer (authz.audit.writer.
isolate): an entry the store refuses is quarantined, the rest written; a store that is
down is retried with backoff, never quarantined. It also adopts the segments of
processes that died (an flock that no living writer holds), or `authz audit ship` does:
those are shipped from their cursor with entries already in the store (or in the
quarantine) skipped by decision id, so a crash between a commit and its cursor ships
nothing twice, and nothing is lost. A fully shipped segment is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authz.audit import segment
from authz.audit.chain import Unsealed
from authz.audit.writer import Sink, StoreDown, isolate

if TYPE_CHECKING:
    from authz.audit.logwriter import LogWriter

log = logging.getLogger("authz.audit")
ORPHAN_INTERVAL = 10.0  # seconds between looks for segments of dead processes


class Carrier:
    """Writes batches read from the log to the store: isolating poison, retrying a store
    that is down until `stopping` is set, de-duplicating when asked."""

    def __init__(self, sink: Sink, stopping: threading.Event, retry_delay: float = 0.5,
                 on_quarantine: Callable[[int], None] | None = None) -> None:
        self.sink = sink
        self.stopping = stopping
        self.retry_delay = retry_delay
        self.on_quarantine = on_quarantine
        self.written = 0
        self.quarantined = 0
        self.skipped = 0  # already in the store: shipped before a crash

    def store(self, entries: Sequence[Unsealed], dedupe: bool = False) -> bool:
        """True once every entry is written or quarantined; False when stopping first
        (then nothing counts as shipped: a later start re-ships it, de-duplicated). The log's
        rows are sealed as they are; only a refused one becomes an AuditEntry."""
        if dedupe:
            known: Any = getattr(self.sink, "known", None)
            if known is not None:
                seen = known([e.decision_id for e in entries])
                self.skipped += sum(1 for e in entries if e.decision_id in seen)
                entries = [e for e in entries if e.decision_id not in seen]
        done: list[str | None] = [None] * len(entries)
        refused: list[tuple[Unsealed, str, str]] = []
        todo: dict[str, dict[str, int]] = {"drops": {}}
        delay = self.retry_delay
        while True:
            try:
                isolate(self.sink, entries, list(range(len(entries))), done, refused, todo)
                break
            except StoreDown as exc:
                log.error("audit shipping failed; retrying in %.1fs: %s", delay, exc)
                if self.stopping.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
        if refused:
            try:
                self.sink.quarantine([(segment.entry(e), why, detail)
                                      for e, why, detail in refused])
            except Exception as exc:
                log.error("audit quarantine failed (%s); the refused entries: %r", exc,
                          [segment.entry(e) for e, _, _ in refused])
            self.quarantined += len(refused)
            if self.on_quarantine is not None:
                self.on_quarantine(len(refused))
        self.written += sum(1 for d in done if d == "")
        return True

    def adopt(self, path: Path, max_batch: int = 1000) -> bool:
        """Ship a dead process's segment whole, then delete it. False: its owner lives (or
        another shipper has it), or the store stayed down until stopping."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        shipping = _shipping_lock(path.parent, path.name.split("-")[1], block=False)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if shipping is None or not path.exists():  # its shipper process still runs, or
                return False  # another shipper adopted and removed it
            pos = segment.shipped(path)
            while True:
                entries, ends, damaged = segment.read_logged(path, pos, None, max_batch)
                if entries:
                    if not self.store(entries, dedupe=True):
                        return False
                    pos = ends[-1]
                    segment.mark_shipped(path, pos)
                if not entries or len(entries) < max_batch:
                    if damaged:
                        log.error("audit log %s: a damaged record at byte %d; what follows "
                                  "it is not shipped (the file is kept)", path, pos)
                        return False
                    break
            segment.remove(path)
            log.info("audit log %s of a stopped process shipped", path.name)
            owner = path.name.split("-")[1]
            if not any(path.parent.glob(f"seg-{owner}-*.log")):  # its last: the lock goes too
                with contextlib.suppress(OSError):
                    (path.parent / f"ship-{owner}.lock").unlink()
            return True
        finally:
            os.close(fd)
            if shipping is not None:
                os.close(shipping)


def _shipping_lock(log_dir: Path, owner: str, block: bool) -> int | None:
    """The flock a shipper process holds on `ship-<owner>.lock` while it ships the log of
    server `owner` (None: held by another). A server that died leaves its shipper process
    finishing a pass: no one adopts its segments until that process is gone too."""
    fd = os.open(log_dir / f"ship-{owner}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def ship_orphans(sink: Sink, log_dir: Path, own: set[Path] | None = None,
                 stopping: threading.Event | None = None, wait: float = 0.0) -> Carrier:
    """Adopt and ship every segment in `log_dir` no living process holds (`authz audit
    ship`, and each shipper now and then). With `wait`, keep trying for that long the
    segments of dead servers whose shipper process is still finishing its last pass."""
    carrier = Carrier(sink, stopping or threading.Event())
    deadline = time.monotonic() + wait
    while True:
        left = []
        for path in sorted(log_dir.glob("seg-*.log")):
            if (own is None or path not in own) and not carrier.adopt(path):
                left.append(path)
        if not any(not _alive(p.name.split("-")[1]) for p in left) or time.monotonic() > deadline:
            return carrier
        time.sleep(0.2)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class Shipper:
    """The shipper thread of one LogWriter."""

    def __init__(self, writer: LogWriter, sink: Sink, *, max_batch: int = 1000,
                 interval: float = 0.05, retry_delay: float = 0.5,
                 on_quarantine: Callable[[int], None] | None = None) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.interval = interval
        self._stopping = threading.Event()
        self.carrier = Carrier(sink, self._stopping, retry_delay, on_quarantine)
        self._wake = threading.Event()
        self._poked = 0
        self._idle = False  # nothing to ship: sleeping until poked (no timer: idle CPU)
        self._pos: dict[int, int] = {}  # segment no -> bytes shipped
        self._cv = threading.Condition()
        self._next_orphans = 0.0
        self._thread = threading.Thread(target=self._run, name="authz-audit-ship", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return self.carrier.written

    @property
    def quarantined(self) -> int:
        return self.carrier.quarantined

    def poke(self, n: int) -> None:
        """Entries were written to the log: wake an idle shipper, or ship at once when a
        batch is full (otherwise the batch gets its interval)."""
        self._poked += n
        if self._idle or self._poked >= self.max_batch:
            self._wake.set()

    def pending(self) -> int:
        with self.writer.cv:
            return sum(s.end - self._pos.get(s.no, 0) for s in self.writer.segments)

    def wait_shipped(self, target: tuple[int, int], timeout: float | None) -> bool:
        """Wait until the log up to `target` (segment no, offset) is in the store."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._cv:
            while self._pos.get(target[0], 0) < target[1] and not self._gone(target[0]):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def shipped(self, no: int) -> int:
        """Bytes of segment `no` in the store."""
        with self._cv:
            return self._pos.get(no, 0)

    def _gone(self, no: int) -> bool:
        return all(s.no != no for s in self.writer.segments)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("audit shipper still in a store call at close; the log keeps the rest")

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self.pending():
                self._wake.wait(self.interval)  # let the batch gather
            else:
                self._idle = True
                if not self.pending():  # an entry written meanwhile has poked
                    self._wake.wait(max(0.0, self._next_orphans - time.monotonic()))
                self._idle = False
            self._wake.clear()
            self._poked = 0
            try:
                self._ship_own()
                if time.monotonic() >= self._next_orphans:
                    self._next_orphans = time.monotonic() + ORPHAN_INTERVAL
                    with self.writer.cv:
                        own = {s.path for s in self.writer.segments}
                    for path in sorted(self.writer.log_dir.glob("seg-*.log")):
                        if path not in own and not self._stopping.is_set():
                            self.carrier.adopt(path, self.max_batch)
            except Exception:  # never let the thread die: the log keeps everything
                log.exception("audit shipper: unexpected error; retrying")
                self._stopping.wait(1.0)
        self._ship_own()  # a last pass at close (bounded by the caller's join)

    def _ship_own(self) -> None:
        with self.writer.cv:
            segs = [(s.no, s.path, s.end, s.closed, s.recovered) for s in self.writer.segments]
        for no, path, end, closed, recovered in segs:
            pos = self._pos.get(no, 0)
            while pos < end:
                try:
                    entries, ends, _ = segment.read_logged(path, pos, end, self.max_batch)
                except FileNotFoundError:  # deleted or renamed under us: the writer copies it
                    self.writer.check_segments()
                    return
                if not entries:
                    log.error("audit log %s: damaged at byte %d (kept)", path, pos)
                    return
                if not self.carrier.store(entries, dedupe=pos < recovered):
                    return
                pos = ends[-1]
                segment.mark_shipped(path, pos)
                with self._cv:
                    self._pos[no] = pos
                    self._cv.notify_all()
            if closed and pos >= end:
                with self.writer.cv:
                    seg = next((s for s in self.writer.segments if s.no == no), None)
                    if seg is not None and seg is not self.writer.segments[-1]:
                        os.close(seg.fd)
                        self.writer.segments.remove(seg)
                        segment.remove(path)
                with self._cv:
                    self._cv.notify_all()


def follow(sink: Sink, log_dir: Path, owner: int, interval: float = 0.25,
           max_batch: int = 1000) -> Carrier:
    """The shipper as a process of its own (`authz audit ship --follow PID`, started by a
    server with audit_shipper = "process"): ships the segments of the server `owner` as
    they grow, the first batch of each de-duplicated (a shipper restarted after a crash
    resumes from a cursor that may lag), and adopts dead processes' segments now and then.
    Returns when `owner` is no longer its parent (the server is gone: what is left are
    orphans, adopted by the next start) or on SIGTERM (after the pass under way)."""
    import signal

    stopping = threading.Event()
    # SIGWINCH: the server waits for the log (QueryAudit, Attribute). A signal whose default
    # is to be ignored, so one sent before this handler exists cannot kill the shipper.
    wake = threading.Event()

    def on_term(*_: object) -> None:
        stopping.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGWINCH, lambda *_: wake.set())
    idle = interval
    carrier = Carrier(sink, stopping)
    _shipping_lock(log_dir, str(owner), block=True)  # held until this process exits
    positions: dict[Path, int] = {}
    next_orphans = 0.0
    while True:
        own = sorted(log_dir.glob(f"seg-{owner}-*.log"), key=segment.order)
        moved = False
        for i, path in enumerate(own):
            pos = positions.get(path)
            first = pos is None
            if pos is None:
                pos = segment.shipped(path)
            try:
                size = path.stat().st_size
                # Nothing past the cursor: one stat, no open (idle CPU, issue 13); a read
                # from there would find no entry.
                if size > pos:
                    recovered = segment.recovered(path)  # from a lost segment: maybe stored
                    while True:
                        # a torn record at the end: read on a later pass
                        entries, ends, _ = segment.read_logged(path, pos, None, max_batch)
                        if not entries or not carrier.store(
                                entries, dedupe=first or pos < recovered):
                            break
                        first, moved = False, True
                        pos = positions[path] = ends[-1]
                        segment.mark_shipped(path, pos)
                        if len(entries) < max_batch:
                            break
                    size = path.stat().st_size
            except FileNotFoundError:  # deleted under the server, which copies it back
                positions.pop(path, None)
                continue
            if i < len(own) - 1 and pos >= size:  # rotated out, all shipped
                segment.remove(path)
                positions.pop(path, None)
        if time.monotonic() >= next_orphans:
            next_orphans = time.monotonic() + ORPHAN_INTERVAL
            for path in sorted(log_dir.glob("seg-*.log")):
                if not path.name.startswith(f"seg-{owner}-"):
                    carrier.adopt(path, max_batch)
        if stopping.is_set() or os.getppid() != owner:
            return carrier
        # Idle: passes further apart (up to 2 s; idle CPU), at once again when woken.
        idle = interval if moved else min(idle * 2, max(interval, 2.0))
        wake.wait(idle)
        wake.clear()
