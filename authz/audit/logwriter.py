"""The audit pipeline "log": entries leave the serving path as bytes in a local log.

`submit` frames the entries and writes them to this process's segment file with one
os.write (under a lock, so records never interleave), then answers:

- batched: at once; the bytes are in the operating system, so a killed process loses
  nothing. A lost machine loses what was not yet on disk: the syncer thread fsyncs at
  least every `sync_interval` (1 s), and at once after `sync_entries` (10,000) unsynced
  entries, so that loss is bounded in time and in count.
- strict: once a fsync covers its bytes (group commit: one fsync settles every call
  that wrote before it).

A shipper thread (authz.audit.shipper) carries the log to the store: numbering, hash
chain and tables as the direct writer does, poison isolated the same way. It resumes
from the log after a crash or restart (segments of dead processes are adopted, each by
one shipper under an flock), so the serving path never waits on SQLAlchemy.
The writer's own segment stays locked (flock) while the process lives.

A segment deleted or renamed under a running server (an operator's cleanup, a full-disk
script) would take every entry written to it after that with the file: the writer checks
its segments (link count, and that the name still names the same file) on each sync, once
a second when idle, when a shipper finds a name gone, and before a flush or close, and
then fails closed (`_recover`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from authz.audit import segment
from authz.audit.chain import AuditEntry
from authz.audit.writer import RECORDED, AuditUnavailable, Sink, WriteMode

log = logging.getLogger("authz.audit")
_DONE = RECORDED


@dataclass
class Segment:
    """One of this process's segment files, and how far it is written and synced."""

    no: int
    path: Path
    fd: int
    end: int = 0  # bytes written (whole records only)
    synced: int = 0  # bytes known to be on disk
    closed: bool = False  # rotated out: no more writes
    recovered: int = 0  # leading bytes copied from a lost segment: shipped de-duplicated


class LogWriter:
    """Same face as authz.audit.writer.AuditWriter (submit, flush, close, counters)."""

    def __init__(self, sink: Sink, mode: WriteMode, log_dir: Path, *,
                 segment_bytes: int = 64 << 20, sync_interval: float = 1.0,
                 sync_entries: int = 10_000, max_batch: int = 1000, ship_interval: float = 0.05,
                 retry_delay: float = 0.5, on_quarantine: Callable[[int], None] | None = None,
                 ship_process: Callable[[], subprocess.Popen[bytes]] | None = None,
                 on_lost: Callable[[int, int], None] | None = None) -> None:
        from authz.audit.shipper import Shipper

        self.mode = mode
        self.log_dir = log_dir
        self.segment_bytes = segment_bytes
        self.sync_interval = sync_interval
        self.sync_entries = sync_entries
        self.cv = threading.Condition()
        self.segments: list[Segment] = []
        self._waiters: list[tuple[int, int, Future[None]]] = []  # strict: (seg no, end, fut)
        self._unsynced = 0  # entries written since the last fsync
        self._stopping = False
        self.submitted = 0
        self.failed = 0  # entries the log could not take (their calls failed)
        self.dropped = 0  # never: there is no queue to overflow (kept for the common face)
        self.lost_segments = 0  # segments found deleted or renamed under us
        self.lost_bytes = 0  # of their unshipped bytes, those that could not be copied back
        self._on_lost = on_lost
        self._syncer: threading.Thread | None = None
        self.shipper: Shipper | None = None
        if mode == WriteMode.OFF:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        self._rotate()
        self._syncer = threading.Thread(target=self._sync_loop, name="authz-audit-sync",
                                        daemon=True)
        self._syncer.start()
        # The shipper: a thread here, or a process of its own (`authz audit ship --follow`),
        # which keeps SQLAlchemy, hashing and their GIL out of the serving process.
        self._spawn = ship_process
        self._child: subprocess.Popen[bytes] | None = None
        if ship_process is not None:
            self._child = ship_process()
        else:
            self.shipper = Shipper(self, sink, max_batch=max_batch, interval=ship_interval,
                                   retry_delay=retry_delay, on_quarantine=on_quarantine)

    # -- counters of the common face ---------------------------------------------------

    @property
    def written(self) -> int:
        return self.shipper.written if self.shipper else 0

    @property
    def quarantined(self) -> int:
        return self.shipper.quarantined if self.shipper else 0

    def pending(self) -> int:
        """Bytes written to the log and not yet shipped."""
        if self.shipper is not None:
            return self.shipper.pending()
        with self.cv:
            segs = [(s.path, s.end) for s in self.segments]
        return sum(max(0, end - segment.shipped(path)) for path, end in segs if path.exists())

    # -- the hot path ------------------------------------------------------------------

    def submit(self, entries: Sequence[AuditEntry], wait: bool = True,
               deadline: float | None = None) -> Future[None] | None:
        """Write the entries to the log; the future is done at once (batched) or once a
        fsync covers them (strict). A write the log refuses (disk full) raises
        AuditUnavailable: no decision is answered unrecorded."""
        if self.mode == WriteMode.OFF or not entries:
            return _DONE
        return self.submit_rows([segment.row(e) for e in entries])

    def submit_rows(self, rows: Sequence[Sequence[object]]) -> Future[None]:
        """`submit` for entries given as the log's rows (authz.audit.record.check_rows:
        a CheckBatch's entries without an AuditEntry object each)."""
        if self.mode == WriteMode.OFF or not rows:
            return _DONE
        data = segment.record(rows)
        n = len(rows)
        strict = self.mode == WriteMode.STRICT
        with self.cv:
            if self._stopping:
                raise AuditUnavailable("the server is stopping")
            seg = self.segments[-1]
            try:
                segment.write_all(seg.fd, data)
            except OSError as exc:
                with contextlib.suppress(OSError):  # no torn record left for the next write
                    os.ftruncate(seg.fd, seg.end)
                self.failed += n
                log.error("audit log write failed (%s): %d entries refused", exc, n)
                raise AuditUnavailable("the audit log could not record the decision") from exc
            seg.end += len(data)
            self.submitted += n
            self._unsynced += n
            fut: Future[None] | None = None
            if strict:
                fut = Future()
                self._waiters.append((seg.no, seg.end, fut))
                self.cv.notify_all()
            elif self._unsynced >= self.sync_entries:
                self.cv.notify_all()
            if seg.end >= self.segment_bytes:
                self._rotate()
        if self.shipper is not None:
            self.shipper.poke(n)
        return fut or _DONE

    def _rotate(self) -> None:
        """Start a new segment (under the lock); the old one is synced and closed."""
        if self.segments:
            old = self.segments[-1]
            os.fsync(old.fd)
            old.synced, old.closed = old.end, True
            self._settle(old.no, old.end)
            if self._spawn is not None:  # the shipper process removes shipped segments
                for seg in [s for s in self.segments if s.closed and not s.path.exists()]:
                    os.close(seg.fd)
                    self.segments.remove(seg)
        self.segments.append(self._open())

    def _open(self) -> Segment:
        no = self.segments[-1].no + 1 if self.segments else 0
        path = self.log_dir / f"seg-{os.getpid()}-{time.time_ns()}-{no}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live: not an orphan
        return Segment(no, path, fd)

    # -- a segment lost under us ---------------------------------------------------------

    def check_segments(self) -> None:
        """Fail closed if a segment was deleted or renamed (see `_recover`)."""
        with self.cv:
            self._check()

    def _check(self) -> None:
        lost = [s for s in self.segments if not _linked(s)]
        if lost:
            self._recover(lost)

    def _recover(self, lost: list[Segment]) -> None:
        """Segments deleted or renamed under a running server (under the lock).

        Their entries live on in the files this process holds open, and nowhere else: a
        shipper looks them up by name. So the unshipped part of each is copied from the
        open file into a new segment (marked for de-duplicated shipping: a batch may be
        in the store already), made durable, and writing goes on there; strict calls
        waiting on the lost bytes answer only once the copy is on disk. Bytes that cannot
        be copied back (a read or write error) fail their strict calls (UNAVAILABLE) and
        are counted lost. Either way it is reported loudly (an error event
        `audit_log_segment_lost`, the `authz_audit_log_segments_lost_total` and
        `authz_audit_log_lost_bytes_total` metrics) and the server keeps serving: with
        the entries copied back nothing is lost, and turning a file deletion into an
        outage (health NOT_SERVING, every strict call refused) would let whoever can
        delete a file stop the service, while every decision from here on is recorded."""
        current = self.segments[-1]
        new = self._open()
        chunks: list[bytes] = []
        failed: set[int] = set()
        unrecovered = 0
        for seg in lost:
            start = (self.shipper.shipped(seg.no) if self.shipper is not None
                     else segment.shipped(seg.path))
            try:
                chunks.append(segment.read_open(seg.fd, start, seg.end))
            except OSError as exc:
                log.error("audit log %s: lost bytes could not be read back: %s", seg.path, exc)
                failed.add(seg.no)
                unrecovered += seg.end - start
        data = b"".join(chunks)
        try:
            if data:
                segment.mark_recovered(new.path, len(data))
                segment.write_all(new.fd, data)
            os.fsync(new.fd)
            new.end = new.synced = new.recovered = len(data)
        except OSError as exc:
            log.error("audit log %s: lost bytes could not be copied back: %s", new.path, exc)
            with contextlib.suppress(OSError):
                os.ftruncate(new.fd, 0)
            failed.update(s.no for s in lost)
            unrecovered += len(data)
            data = b""
        if current not in lost:
            os.fsync(current.fd)
            current.synced, current.closed = current.end, True
        for seg in lost:
            self.segments.remove(seg)
            os.close(seg.fd)
            if not seg.path.exists():  # its cursor would otherwise stay behind for ever
                segment.remove(seg.path)
        self.lost_segments += len(lost)
        self.lost_bytes += unrecovered
        self._unsynced = 0
        self.segments.append(new)
        for no, _end, fut in self._waiters:
            if no in failed and not fut.done():
                fut.set_exception(AuditUnavailable(
                    "the audit log segment was removed before the decision was on disk"))
        self._waiters = [w for w in self._waiters if w[0] not in failed]
        self._settle(new.no, new.end)
        log.error("audit_log_segment_lost", extra={"fields": {
            "problem": "a live audit log segment was deleted, renamed or truncated",
            "segments": [str(s.path) for s in lost], "copied_bytes": len(data),
            "copied_to": str(new.path), "lost_bytes": unrecovered}})
        if self._on_lost is not None:
            self._on_lost(len(lost), unrecovered)

    # -- group commit ------------------------------------------------------------------

    def _sync_loop(self) -> None:
        last = time.monotonic()
        while True:
            with self.cv:
                while not self._stopping and not self._waiters and (
                        self._unsynced < self.sync_entries
                        and (not self._unsynced or time.monotonic() - last < self.sync_interval)):
                    if not self.cv.wait(self.sync_interval) and not self._unsynced:
                        self._check()  # idle: a segment removed now is noticed within seconds
                if self._stopping and not self._waiters:
                    return
                seg = self.segments[-1]
                fd, end, self._unsynced = seg.fd, seg.end, 0
            try:
                os.fdatasync(fd)
            except OSError as exc:  # the disk refused: strict calls must not be acknowledged
                log.error("audit log fsync failed: %s", exc)
                with self.cv:
                    waiting, self._waiters = self._waiters, []
                for _, _, fut in waiting:
                    if not fut.done():
                        fut.set_exception(AuditUnavailable(
                            "the audit log could not record the decision"))
                continue
            last = time.monotonic()
            self._keep_child()
            with self.cv:
                self._check()  # strict calls answer only for bytes in a file that has a name
                seg.synced = max(seg.synced, end)
                self._settle(seg.no, end)

    def _settle(self, no: int, end: int) -> None:
        """Strict calls whose bytes are on disk (up to `end` of segment `no`) answer."""
        keep = []
        for w in self._waiters:
            if (w[0], w[1]) <= (no, end):
                if not w[2].done():
                    w[2].set_result(None)
            else:
                keep.append(w)
        self._waiters = keep

    # -- flush and close ---------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything written so far is in the store; False on timeout."""
        with self.cv:
            if not self.segments:
                return True
            self._check()  # a shipper cannot ship a segment that lost its name
            seg = self.segments[-1]
            target = (seg.no, seg.end)
        if self.shipper is not None:
            return self.shipper.wait_shipped(target, timeout)
        if self._spawn is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if seg.path.exists() and segment.shipped(seg.path) < seg.end and self._child:
            with contextlib.suppress(OSError):
                self._child.send_signal(signal.SIGWINCH)  # an idle shipper: ship now
        while seg.path.exists() and segment.shipped(seg.path) < seg.end:
            self._keep_child()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _keep_child(self) -> None:
        """A shipper process that died is started again (it resumes from the cursor)."""
        if self._child is not None and self._child.poll() is not None and self._spawn:
            with self.cv:
                if self._stopping:
                    return
            log.error("audit shipper process exited (%s); starting it again",
                      self._child.returncode)
            self._child = self._spawn()

    def close(self, timeout: float = 10.0) -> None:
        """Sync the log, ship what can be shipped within `timeout`, stop. What is not
        shipped stays in the segment (on disk) for the next start to ship."""
        if self._syncer is None:
            return
        end = time.monotonic() + timeout
        self.flush(max(0.0, timeout - 0.5))  # checks the segments first
        with self.cv:
            self._stopping = True
            self.cv.notify_all()
        self._syncer.join(max(0.1, end - time.monotonic()))
        with self.cv:
            for seg in self.segments:
                try:
                    os.fsync(seg.fd)
                except OSError as exc:
                    log.error("audit log fsync at close failed: %s", exc)
                seg.synced, seg.closed = seg.end, True
            self._settle(self.segments[-1].no, self.segments[-1].end)
        if self.shipper is not None:
            self.shipper.stop(max(0.1, end - time.monotonic()))
        if self._child is not None:
            self._child.terminate()
            try:
                self._child.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._child.kill()  # the log keeps what it did not ship
                self._child.wait()
        with self.cv:
            for seg in self.segments:
                done = (self.shipper.shipped(seg.no) if self.shipper is not None
                        else segment.shipped(seg.path))
                if done >= seg.end:
                    segment.remove(seg.path)  # all in the store
                os.close(seg.fd)  # releases the flock: a later start adopts what is left
        self._syncer = None


def _linked(seg: Segment) -> bool:
    """Whether the segment's name still names the file this process writes, and that file
    still holds every byte written (a truncation loses them as a deletion would)."""
    st = os.fstat(seg.fd)
    if st.st_nlink == 0 or st.st_size != seg.end:
        return False
    try:
        at = os.stat(seg.path)
    except FileNotFoundError:
        return False
    return (at.st_dev, at.st_ino) == (st.st_dev, st.st_ino)
