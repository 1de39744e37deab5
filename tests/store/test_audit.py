"""The audit trail in the store, on SQLite and PostgreSQL: chain, tampering, paging,
export, retention, usage, and replicas appending to one chain."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from authz.audit.chain import GENESIS, AuditEntry, verify
from authz.store import Store
from authz.store.audit import AuditStore, TrimRefused, usage_by_user
from authz.store.audit_query import Query, stamp
from authz.store.audit_schema import audit_entries as E
from authz.store.audit_schema import audit_heads as H
from authz_server.cli import audit as cli

from .conftest import OpenStore

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def entry(i: int, org: str = "acme-eu", user: str = "u-sam", module: str = "invoices",
          record: str = "", at: dt.datetime | None = None, kind: str = "check",
          allowed: bool = True) -> AuditEntry:
    return AuditEntry(org_id=org, seq=0, kind=kind, at=stamp(at or T0 + dt.timedelta(minutes=i)),
                      decision_id=f"d{org}{i}", crm_user=user, acting_kind="finance_user",
                      acting_id="b-sam", action="create", module=module, record_id=record,
                      allowed=allowed, reason="granted", mode="unified", policy_revision="p1",
                      directory_revision=3, caller="crm-web")


@pytest.fixture
def trail(store: Store) -> AuditStore:
    return AuditStore(store.engine)


def run_cli(db_url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["audit", *argv, "--db", db_url])
    code: int = args.func(args)
    return code


def test_append_numbers_and_links_each_organization_chain(trail: AuditStore) -> None:
    sealed = trail.append([entry(1), entry(2, org="globex-us"), entry(3)])
    assert [(e.org_id, e.seq) for e in sealed] == [("acme-eu", 1), ("acme-eu", 2), ("globex-us", 1)]
    trail.append([entry(4)])
    acme = list(trail.entries("acme-eu"))
    assert [e.seq for e in acme] == [1, 2, 3]
    assert acme[0].prev_hash == GENESIS and acme[1].prev_hash == acme[0].hash
    assert verify(acme) == []
    assert trail.head("acme-eu").seq == 3 and trail.head("acme-eu").hash == acme[-1].hash
    assert trail.verify("acme-eu").ok and trail.verify("globex-us").ok
    assert trail.decision("dacme-eu4") == acme[2]


def test_an_edited_row_is_named_by_verify_and_the_cli(trail: AuditStore, db_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    trail.append([entry(i) for i in range(1, 6)])
    assert run_cli(db_url, "verify") == 0
    assert "acme-eu: ok, 5 entries" in capsys.readouterr().out
    with trail.engine.begin() as conn:  # someone rewrites who did it
        conn.execute(E.update().where(E.c.org_id == "acme-eu", E.c.seq == 3).values(crm_user="u-anna"))
    v = trail.verify("acme-eu")
    assert [(b.seq, b.problem) for b in v.breaks] == [(3, "content changed after it was recorded")]
    assert run_cli(db_url, "verify", "--org", "acme-eu") == 1
    out = capsys.readouterr().out
    assert "acme-eu: BROKEN" in out and "acme-eu entry 3: content changed" in out


def test_removed_rows_are_named_in_the_middle_and_at_the_end(trail: AuditStore) -> None:
    trail.append([entry(i) for i in range(1, 6)])
    with trail.engine.begin() as conn:
        conn.execute(E.delete().where(E.c.seq == 2))
    problems = [str(b) for b in trail.verify("acme-eu").breaks]
    assert any("entry 2: missing" in p for p in problems)
    with trail.engine.begin() as conn:
        conn.execute(E.delete().where(E.c.seq == 5))
    problems = [str(b) for b in trail.verify("acme-eu").breaks]
    assert any("entries removed at the end" in p for p in problems)


def test_query_narrows_and_pages(trail: AuditStore) -> None:
    trail.append([entry(i, user="u-sam" if i % 2 else "u-ivy", record=f"inv-{i % 3}")
                  for i in range(1, 11)])
    sam = trail.query(Query("acme-eu", crm_user="u-sam", limit=2))
    assert [e.seq for e in sam.entries] == [1, 3] and sam.next_after == 3
    rest = trail.query(Query("acme-eu", crm_user="u-sam", after_seq=sam.next_after, limit=10))
    assert [e.seq for e in rest.entries] == [5, 7, 9] and rest.next_after == 0
    assert [e.seq for e in trail.query(Query("acme-eu", record_id="inv-0")).entries] == [3, 6, 9]
    window = trail.query(Query("acme-eu", since=T0 + dt.timedelta(minutes=4),
                               until=T0 + dt.timedelta(minutes=6)))
    assert [e.seq for e in window.entries] == [4, 5]
    assert trail.query(Query("globex-us")).entries == []


def test_export_is_json_lines_that_verify_on_their_own(trail: AuditStore) -> None:
    trail.append([entry(i) for i in range(1, 4)] + [entry(9, org="globex-us")])
    out = io.StringIO()
    assert trail.export(out, "acme-eu") == 3
    copies = [AuditEntry(**json.loads(line)) for line in out.getvalue().splitlines()]
    assert verify(copies) == [] and copies[0].caller == "crm-web"
    everything = io.StringIO()
    assert trail.export(everything) == 4


def test_retention_trims_a_prefix_and_verify_still_holds(trail: AuditStore, db_url: str) -> None:
    old = T0 - dt.timedelta(days=400)
    trail.append([entry(i, at=old + dt.timedelta(minutes=i)) for i in range(1, 4)])
    trail.append([entry(i) for i in range(4, 7)])
    assert trail.trim(T0 - dt.timedelta(days=30)) == {"acme-eu": 3}
    v = trail.verify("acme-eu")
    assert v.ok and v.checked == 3 and v.head.checkpoint_seq == 3
    assert [e.seq for e in trail.entries("acme-eu")] == [4, 5, 6]
    trail.append([entry(7)])  # the chain goes on after a trim
    assert trail.verify("acme-eu").ok
    assert trail.trim(T0 - dt.timedelta(days=30)) == {}
    assert run_cli(db_url, "verify") == 0
    with trail.engine.begin() as conn:  # removing the first kept entry is still detected
        conn.execute(E.delete().where(E.c.seq == 4))
    assert not trail.verify("acme-eu").ok


def test_retention_refuses_to_destroy_evidence(trail: AuditStore) -> None:
    old = T0 - dt.timedelta(days=400)
    trail.append([entry(i, at=old + dt.timedelta(minutes=i)) for i in range(1, 4)])
    with trail.engine.begin() as conn:
        conn.execute(E.update().where(E.c.seq == 2).values(allowed=False))
    with pytest.raises(TrimRefused, match="entry 2"):
        trail.trim(T0)
    assert len(list(trail.entries("acme-eu"))) == 3


def test_usage_counts_checks_per_user_and_module(trail: AuditStore) -> None:
    trail.append([entry(1, user="u-ivy"), entry(2, user="u-ivy", module="estimates"),
                  entry(3, user="u-noah"), entry(4, user="u-ivy", kind="attribute"),
                  entry(5, user="u-ivy", at=T0 - dt.timedelta(days=200)),
                  entry(6, user="u-ivy", org="globex-us"),
                  # Neither a denied Check nor settings is a finance operation (§6).
                  entry(7, user="u-noah", allowed=False), entry(8, user="u-noah", module="settings")])
    since = T0 - dt.timedelta(days=90)
    assert trail.usage("acme-eu", since) == {("u-ivy", "invoices"): 1, ("u-ivy", "estimates"): 1,
                                             ("u-noah", "invoices"): 1}
    assert usage_by_user(trail.engine, "acme-eu", since) == {"u-ivy": 2, "u-noah": 1}
    with trail.engine.connect() as conn:
        assert usage_by_user(conn, "acme-eu", since) == {"u-ivy": 2, "u-noah": 1}


def test_replicas_appending_at_once_keep_one_chain(open_: OpenStore, store: Store) -> None:
    replicas = [AuditStore(open_().engine) for _ in range(3)]

    def work(r: AuditStore) -> None:
        for i in range(10):
            r.append([entry(i), entry(i + 100)])

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(work, replicas))
    v = replicas[0].verify("acme-eu")
    assert v.ok and v.checked == 60 and v.head.seq == 60


def test_drops_are_counted_on_the_head(trail: AuditStore) -> None:
    trail.append([entry(1)], dropped={"acme-eu": 2, "globex-us": 5})
    trail.append([], dropped={"acme-eu": 1})
    assert trail.head("acme-eu").dropped == 3 and trail.head("globex-us").dropped == 5
    assert trail.verify("globex-us").ok
    with trail.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(H)).scalar() == 2


def test_sealed_entries_are_stored_field_for_field(trail: AuditStore) -> None:
    (sealed,) = trail.append([dataclasses.replace(entry(1), reason="naïve ✓", record_id="r/1")])
    assert list(trail.entries("acme-eu")) == [sealed]


def test_query_export_and_trim_commands(trail: AuditStore, db_url: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    trail.append([entry(1, at=now - dt.timedelta(days=400)), entry(2, record="inv-7", at=now),
                  entry(3, record="inv-7", at=now)])
    assert run_cli(db_url, "query", "--org", "acme-eu", "--record", "inv-7", "--limit", "1") == 0
    out = capsys.readouterr()
    assert out.out.count("inv-7") == 1 and "--page-token 2" in out.err
    assert run_cli(db_url, "query", "--org", "acme-eu", "--page-token", "2", "--json") == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [3]
    assert run_cli(db_url, "query", "--org", "acme-eu", "--limit", "0") == 2
    target = tmp_path / "acme.jsonl"
    assert run_cli(db_url, "export", "--org", "acme-eu", "--out", str(target)) == 0
    assert len(target.read_text().splitlines()) == 3
    assert run_cli(db_url, "trim", "--older-than", "30") == 0  # a dry run by default
    out = capsys.readouterr().out
    assert "acme-eu: would trim 1 entries" in out and "--apply" in out
    assert run_cli(db_url, "export", "--org", "acme-eu", "--out", str(target)) == 0
    assert len(target.read_text().splitlines()) == 3  # nothing deleted
    assert run_cli(db_url, "trim", "--older-than", "30", "--apply") == 0
    assert "acme-eu: trimmed 1 entries" in capsys.readouterr().out
    assert run_cli(db_url, "verify") == 0
    assert "trimmed up to entry 1" in capsys.readouterr().out


def test_verify_under_concurrent_appends_checks_a_consistent_prefix(trail: AuditStore) -> None:
    """A healthy trail being written is never reported broken: verify reads the head and
    walks the entries up to it in one snapshot (issue 11 item 8)."""
    trail.append([entry(0)])
    stop = False
    written = 0

    def write() -> None:
        nonlocal written
        while not stop:
            trail.append([entry(i) for i in range(5)])
            written += 5

    with ThreadPoolExecutor(1) as pool:
        writing = pool.submit(write)
        try:
            verdicts = [trail.verify("acme-eu") for _ in range(30)]
        finally:
            stop = True
        writing.result(30)
    assert written > 0
    assert [str(b) for v in verdicts for b in v.breaks] == []
    assert all(v.checked == v.head.seq for v in verdicts)
    assert len({v.head.seq for v in verdicts}) > 1  # it really ran while entries were added


def test_quarantined_entries_are_counted_and_shown_by_verify(trail: AuditStore,
                                                             db_url: str) -> None:
    trail.append([entry(1)])
    poisoned = dataclasses.replace(entry(2), record_id="inv\x00-1")
    trail.quarantine([(poisoned, "the store refused the entry (DataError)", "NUL \x00 text")])
    v = trail.verify("acme-eu")
    assert v.ok and v.quarantined == 1 and v.checked == 1
    (q,) = v.quarantine
    assert q.decision_id == "dacme-eu2" and "DataError" in str(q) and "\\u0000" in q.entry
    assert json.loads(q.entry)["record_id"] == "inv\x00-1"  # kept whole, escaped
    assert run_cli(db_url, "verify") == 0
