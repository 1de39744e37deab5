"""The audit writer: strict waits for the commit, batched queues, and a full queue
either waits or drops with a count, never silently."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from authz.audit.chain import AuditEntry
from authz.audit.writer import AuditUnavailable, AuditWriter, WhenFull, WriteMode


def entry(i: int, org: str = "acme-eu") -> AuditEntry:
    return AuditEntry(org_id=org, seq=0, kind="check", at="2025-06-01T12:00:00.000000Z",
                      decision_id=f"d{i}", crm_user="u-sam", acting_kind="finance_user",
                      acting_id="b-sam", action="view", module="invoices", record_id="",
                      allowed=True, reason="granted", mode="unified", policy_revision="p",
                      directory_revision=1, caller="t")


class Sink:
    """Records batches; can be made to fail, or to hold every write until released, or to
    refuse (as a store refuses data) any batch holding a poisoned decision id."""

    def __init__(self) -> None:
        self.batches: list[list[AuditEntry]] = []
        self.dropped: dict[str, int] = {}
        self.fail = False
        self.poison: set[str] = set()
        self.kept: list[tuple[AuditEntry, str, str]] = []
        self.attempts = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def append(self, entries: Sequence[AuditEntry], dropped: Mapping[str, int] | None = None) -> None:
        self.attempts += 1
        self.entered.set()
        self.gate.wait(10)
        if self.fail:
            raise OSError("database unreachable")
        if any(e.decision_id in self.poison for e in entries):
            raise ValueError("text fields cannot contain NUL")
        self.batches.append(list(entries))
        for org, n in (dropped or {}).items():
            self.dropped[org] = self.dropped.get(org, 0) + n

    def refused(self, exc: Exception) -> str:
        return "refused" if isinstance(exc, ValueError) else ""

    def quarantine(self, refused: Sequence[tuple[AuditEntry, str, str]]) -> None:
        self.kept.extend(refused)

    @property
    def ids(self) -> list[str]:
        return [e.decision_id for b in self.batches for e in b]


def test_strict_future_settles_only_once_written() -> None:
    sink = Sink()
    sink.gate.clear()
    w = AuditWriter(sink, WriteMode.STRICT)
    fut = w.submit([entry(1), entry(2)])
    assert fut is not None
    assert sink.entered.wait(5)
    assert not fut.done()  # the write is under way: the answer must not leave yet
    sink.gate.set()
    fut.result(5)
    assert sink.ids == ["d1", "d2"]
    w.close()


def test_strict_write_failure_fails_the_waiting_call() -> None:
    sink = Sink()
    sink.fail = True
    w = AuditWriter(sink, WriteMode.STRICT)
    fut = w.submit([entry(1)])
    assert fut is not None
    with pytest.raises(AuditUnavailable, match="could not record") as info:
        fut.result(5)
    assert "unreachable" not in str(info.value)  # the store's own text stays in the log
    assert w.failed == 1
    w.close()


def test_batched_answers_at_once_and_writes_in_the_background() -> None:
    sink = Sink()
    w = AuditWriter(sink, WriteMode.BATCHED, flush_interval=0.01)
    for i in range(50):
        fut = w.submit([entry(i)])
        assert fut is not None and fut.done()
    assert w.flush(5)
    assert sink.ids == [f"d{i}" for i in range(50)]
    assert len(sink.batches) < 50  # batched, not one write per entry
    w.close()


def test_batched_keeps_entries_through_a_failed_write() -> None:
    sink = Sink()
    sink.fail = True
    w = AuditWriter(sink, WriteMode.BATCHED, flush_interval=0.01, retry_delay=0.01)
    w.submit([entry(1)])
    assert not w.flush(0.2)
    sink.fail = False
    assert w.flush(5)
    assert sink.ids == ["d1"]
    w.close()


def test_full_queue_with_drop_policy_counts_every_drop() -> None:
    sink = Sink()
    sink.gate.clear()
    w = AuditWriter(sink, WriteMode.BATCHED, queue_size=2, when_full=WhenFull.DROP,
                    max_batch=1, flush_interval=0.01)
    w.submit([entry(0)])
    assert sink.entered.wait(5)  # the flusher holds entry 0; the queue is empty again
    for i in range(1, 6):
        w.submit([entry(i, org="globex-us" if i == 5 else "acme-eu")])
    assert w.dropped == 3 and w.pending() == 2
    sink.gate.set()
    assert w.flush(5)
    w.close()
    assert sorted(sink.ids) == ["d0", "d1", "d2"]
    assert sink.dropped == {"acme-eu": 2, "globex-us": 1}  # written to the heads: visible


def test_full_queue_with_block_policy_waits_and_loses_nothing() -> None:
    sink = Sink()
    sink.gate.clear()
    w = AuditWriter(sink, WriteMode.BATCHED, queue_size=2, when_full=WhenFull.BLOCK,
                    max_batch=1, flush_interval=0.01)
    w.submit([entry(0)])
    assert sink.entered.wait(5)
    w.submit([entry(1)])
    w.submit([entry(2)])
    assert w.submit([entry(3)], wait=False) is None  # the event loop's path: wait elsewhere
    blocked = threading.Thread(target=w.submit, args=([entry(3)],))
    blocked.start()
    blocked.join(0.1)
    assert blocked.is_alive()  # waiting for room
    sink.gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    assert w.flush(5)
    w.close()
    assert sink.ids == ["d0", "d1", "d2", "d3"] and w.dropped == 0


def test_off_records_nothing_and_close_drains_the_queue() -> None:
    sink = Sink()
    off = AuditWriter(sink, WriteMode.OFF)
    assert off.submit([entry(1)]) is not None and off.flush()
    off.close()
    w = AuditWriter(sink, WriteMode.BATCHED, flush_interval=30)
    w.submit([entry(2)])
    w.close()
    assert sink.ids == ["d2"]


def test_batched_poisoned_entry_is_quarantined_and_the_rest_written_in_order() -> None:
    sink = Sink()
    sink.poison = {"d37"}
    sink.gate.clear()
    quarantined: list[int] = []
    w = AuditWriter(sink, WriteMode.BATCHED, flush_interval=0.01, on_quarantine=quarantined.append)
    for i in range(100):
        w.submit([entry(i)])
    sink.gate.set()
    assert w.flush(5)
    assert sink.ids == [f"d{i}" for i in range(100) if i != 37]
    assert [e.decision_id for e, _, _ in sink.kept] == ["d37"] and sink.kept[0][1] == "refused"
    assert "NUL" in sink.kept[0][2]  # the store's text is kept for operators
    assert w.quarantined == 1 and quarantined == [1] and w.written == 99
    assert sink.attempts < 30  # bisected, not one write per entry
    w.close()


def test_strict_only_the_poisoned_call_fails() -> None:
    sink = Sink()
    sink.poison = {"d5"}
    sink.gate.clear()
    w = AuditWriter(sink, WriteMode.STRICT)
    futs = [w.submit([entry(i)]) for i in range(10)]
    batch = w.submit([entry(20), entry(5), entry(21)])  # a CheckBatch holding the poison
    sink.gate.set()
    for i, fut in enumerate(futs):
        assert fut is not None
        if i == 5:
            with pytest.raises(AuditUnavailable, match="refused"):
                fut.result(5)
        else:
            fut.result(5)
    assert batch is not None
    with pytest.raises(AuditUnavailable):
        batch.result(5)
    assert "d5" not in sink.ids and {"d20", "d21"} <= set(sink.ids)
    w.close()


def test_a_store_that_is_down_is_retried_never_quarantined() -> None:
    sink = Sink()
    sink.fail = True
    w = AuditWriter(sink, WriteMode.BATCHED, flush_interval=0.01, retry_delay=0.01)
    for i in range(8):
        w.submit([entry(i)])
    assert not w.flush(0.2)
    sink.fail = False
    assert w.flush(5)
    assert sink.ids == [f"d{i}" for i in range(8)] and sink.kept == [] and w.quarantined == 0
    w.close()


def test_waiting_for_room_ends_at_the_deadline_and_close_ends_in_time() -> None:
    sink = Sink()
    sink.gate.clear()  # a store that hangs
    w = AuditWriter(sink, WriteMode.STRICT, queue_size=1)
    held = w.submit([entry(0)])
    assert sink.entered.wait(5)
    waiting = w.submit([entry(1)])
    with pytest.raises(AuditUnavailable, match="in time"):
        w.submit([entry(2)], deadline=time.monotonic() + 0.2)
    w.close(timeout=0.3)
    assert held is not None and waiting is not None
    with pytest.raises(AuditUnavailable, match="stopped"):
        waiting.result(1)  # never acknowledged
    with pytest.raises(AuditUnavailable):
        w.submit([entry(3)])
    sink.gate.set()
def test_an_idle_batched_writer_sleeps_until_an_entry_arrives() -> None:
    """Issue 13 (idle CPU): no flush timer ticking while the queue is empty. Counted by
    the flusher thread's wake-ups (context switches), not by time."""
    sink = Sink()
    w = AuditWriter(sink, WriteMode.BATCHED, flush_interval=0.001)
    try:
        assert w._thread is not None and w._thread.native_id is not None
        status = Path(f"/proc/self/task/{w._thread.native_id}/status")

        def wakeups() -> int:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
            raise AssertionError("no context switch count")

        time.sleep(0.05)
        before = wakeups()
        time.sleep(0.3)  # 300 flush intervals
        assert wakeups() - before <= 3
        w.submit([entry(1)])
        assert w.flush(timeout=10) and sink.ids == ["d1"]
    finally:
        w.close()


def test_batched_queue_is_bounded_in_time_as_well_as_count() -> None:
    """What a kill can lose (the queue) is bounded by age too: with the store stalled,
    an entry older than max_lag makes the next caller wait (or drop, by policy)."""
    sink = Sink()
    sink.gate.clear()
    w = AuditWriter(sink, WriteMode.BATCHED, queue_size=1000, max_batch=1, flush_interval=0.01,
                    max_lag=0.1, when_full=WhenFull.DROP)
    w.submit([entry(0)])
    assert sink.entered.wait(5)  # the flusher is stuck writing entry 0
    w.submit([entry(1)])  # queued: room by count
    time.sleep(0.3)  # older than max_lag now
    w.submit([entry(2)])
    assert w.dropped == 1 and w.pending() == 1  # dropped (counted) though the queue has room
    sink.gate.set()
    assert w.flush(5)
    w.close()
    assert sink.ids == ["d0", "d1"]
