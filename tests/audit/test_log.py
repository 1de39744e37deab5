"""The local audit log: records framed and checksummed, a torn tail never trusted, and a
shipper that resumes a dead process's log ships nothing twice and loses nothing."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from authz.audit import segment
from authz.audit.chain import AuditEntry, Unsealed
from authz.audit.logwriter import LogWriter
from authz.audit.shipper import ship_orphans
from authz.audit.writer import WriteMode
from authz.store import open_store
from authz.store.audit import AuditStore
from tests.audit.test_writer import entry


def test_records_round_trip_and_a_torn_tail_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "seg-1-1-0.log"
    first = [entry(i) for i in range(3)]
    odd = dataclasses.replace(entry(9), record_id="inv\x00é\n")
    records = [segment.frames([e]) for e in [*first, odd]]
    path.write_bytes(b"".join(records) + segment.frames([entry(4)])[:-3])
    got, ends, damaged = segment.read(path, 0)
    assert [e.decision_id for e in got] == ["d0", "d1", "d2", "d9"] and damaged
    assert got[3].record_id == "inv\x00é\n" and got[0] == first[0]
    again, _, _ = segment.read(path, ends[1])
    assert [e.decision_id for e in again] == ["d2", "d9"]
    data = bytearray(path.read_bytes())
    data[ends[0] + 10] ^= 0xFF  # a flipped bit in the second record: stop before it
    path.write_bytes(bytes(data))
    got, _, damaged = segment.read(path, 0)
    assert [e.decision_id for e in got] == ["d0"] and damaged


def test_a_write_is_one_record_read_whole_and_lost_whole(tmp_path: Path) -> None:
    """One record per write (a CheckBatch's entries together); the older one-entry
    records are still read; damage anywhere in a record loses that record and stops."""
    path = tmp_path / "seg-1-1-0.log"
    batch = segment.frames([entry(i) for i in range(5)])
    path.write_bytes(segment.frame(entry(7)) + batch + segment.frames([entry(8), entry(9)]))
    got, ends, damaged = segment.read(path, 0, limit=3)  # whole records, past the limit
    assert [e.decision_id for e in got] == ["d7", "d0", "d1", "d2", "d3", "d4"] and not damaged
    assert ends[1:] == [ends[1]] * 5 and ends[1] == ends[0] + len(batch)
    assert got[1:] == [entry(i) for i in range(5)]
    data = bytearray(path.read_bytes())
    data[ends[0] + len(batch) - 5] ^= 0xFF  # the batch's last entry damaged
    path.write_bytes(bytes(data))
    got, _, damaged = segment.read(path, 0)
    assert [e.decision_id for e in got] == ["d7"] and damaged


def test_a_dead_process_log_is_shipped_once_even_after_a_crash_mid_way(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/authz.db")
    store.upgrade()
    trail = AuditStore(store.engine)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    path = log_dir / "seg-999999-1-0.log"  # a process that is gone: no flock on it
    path.write_bytes(segment.frames([entry(i) for i in range(10)]))
    trail.append([entry(i) for i in range(4)])  # shipped before the crash, cursor not saved
    carrier = ship_orphans(trail, log_dir)
    assert (carrier.written, carrier.skipped) == (6, 4)
    ids = [e.decision_id for e in trail.entries("acme-eu")]
    assert ids == [f"d{i}" for i in range(10)] and trail.verify("acme-eu").ok
    assert not path.exists()  # shipped: removed
    store.close()


def test_a_live_writers_segment_is_not_adopted_and_close_ships_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/authz.db")
    store.upgrade()
    trail = AuditStore(store.engine)
    w = LogWriter(trail, WriteMode.STRICT, tmp_path / "log", ship_interval=30)
    fut = w.submit([entry(1), entry(2)])
    assert fut is not None
    fut.result(5)  # on disk (fsync), whether shipped or not
    carrier = ship_orphans(trail, tmp_path / "log")
    assert carrier.written == 0  # held by a living writer (flock)
    w.close(5)
    assert [e.decision_id for e in trail.entries("acme-eu")] == ["d1", "d2"]
    assert [n for n in os.listdir(tmp_path / "log") if n.startswith("seg-")] == []
    store.close()


def test_the_record_carries_every_field_the_store_seals() -> None:
    """A field added to AuditEntry must be added to the log's record too (or it would be
    lost on the way to the store)."""
    sealed_elsewhere = {"seq", "prev_hash", "hash"}
    names = tuple(f.name for f in dataclasses.fields(AuditEntry) if f.name not in sealed_elsewhere)
    assert names == segment._FIELDS == segment.Logged._fields


class _Refusing(AuditStore):
    """The store, refusing any write that holds decision d2 (a poisoned entry)."""

    def append(self, entries: Sequence[Unsealed],
               dropped: Mapping[str, int] | None = None) -> Sequence[AuditEntry]:
        if any(e.decision_id == "d2" for e in entries):
            raise ValueError("poison")
        return super().append(entries, dropped)

    @staticmethod
    def refused(exc: Exception) -> str:
        return "poisoned" if str(exc) == "poison" else ""


def test_the_shipper_seals_the_logs_rows_and_quarantines_a_refused_one_whole(
        tmp_path: Path) -> None:
    """Shipped without an AuditEntry per row: the chain is the one the entries would have
    made, and the one refused entry is quarantined with every field."""
    store = open_store(f"sqlite:///{tmp_path}/authz.db")
    store.upgrade()
    trail = _Refusing(store.engine)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    odd = dataclasses.replace(entry(2), record_id="inv\x00é\n", allowed=False)
    batch = [entry(0), entry(1), odd, entry(3)]
    (log_dir / "seg-999999-1-0.log").write_bytes(segment.frames(batch))
    carrier = ship_orphans(trail, log_dir)
    assert (carrier.written, carrier.quarantined) == (3, 1)
    ref_store = open_store(f"sqlite:///{tmp_path}/ref.db")
    ref_store.upgrade()
    reference = AuditStore(ref_store.engine)
    reference.append([entry(0), entry(1), entry(3)])
    assert list(trail.entries("acme-eu")) == list(reference.entries("acme-eu"))
    verdict = trail.verify("acme-eu")
    assert verdict.ok and verdict.quarantined == 1
    kept = json.loads(verdict.quarantine[0].entry)
    assert kept == json.loads(json.dumps(dataclasses.asdict(odd)))
    store.close()
    ref_store.close()


def test_two_sqlite_stores_in_one_folder_keep_two_logs(tmp_path: Path) -> None:
    """A crashed server's entries were once adopted by another store's shipper in the same
    folder (and chained into the wrong trail): each store file has a log folder of its own."""
    a = segment.default_log_dir(f"sqlite:///{tmp_path / 'a.db'}")
    b = segment.default_log_dir(f"sqlite:///{tmp_path / 'b.db'}")
    assert a != b and a.parent == b.parent == tmp_path
    assert segment.default_log_dir(f"sqlite:///{tmp_path / 'a.db'}?timeout=5") == a


def test_a_segment_renamed_under_a_strict_writer_is_copied_back(tmp_path: Path) -> None:
    """A rename takes the name away as a delete does: the strict call after it answers only
    once its entry is on disk under a name a shipper reads, and nothing is lost or doubled."""
    store = open_store(f"sqlite:///{tmp_path}/authz.db")
    store.upgrade()
    trail = AuditStore(store.engine)
    log_dir = tmp_path / "log"
    lost: list[tuple[int, int]] = []
    w = LogWriter(trail, WriteMode.STRICT, log_dir, ship_interval=30,
                  on_lost=lambda n, b: lost.append((n, b)))
    first = w.submit([entry(1), entry(2)])
    assert first is not None
    first.result(5)
    (live,) = log_dir.glob("seg-*.log")
    live.rename(tmp_path / "moved-away.log")
    later = w.submit([entry(3)])
    assert later is not None
    later.result(5)  # settled by the fsync after the copy
    (now,) = log_dir.glob("seg-*.log")  # d3 (and d1, d2 unless shipped already) copied here
    assert now != live and segment.read(now, 0)[0][-1].decision_id == "d3"
    w.close(5)
    assert [e.decision_id for e in trail.entries("acme-eu")] == ["d1", "d2", "d3"]
    assert (w.lost_segments, w.lost_bytes, lost) == (1, 0, [(1, 0)])
    assert sorted(os.listdir(log_dir)) == []
    store.close()
