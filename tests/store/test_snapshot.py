"""Snapshots: served from memory, refreshed by a revision poll, read-your-writes across
replicas (two Store instances on one database), and consistent under concurrent writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from authz.directory import CrmUser, DirectorySnapshot, OrgMode
from authz.errors import FailedPrecondition
from authz.store import Store, schema

from .conftest import ANNA, BOOKS_ANNA, IVY, ORG, OpenStore


@contextmanager
def counting_queries(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    """Behaviour, not timing: wait generously for something that must happen."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_unknown_organization_has_an_empty_snapshot(store: Store) -> None:
    snap = store.snapshot("nobody")
    assert snap == DirectorySnapshot("nobody", 0, mode=OrgMode())  # legacy until it migrates


def test_a_fresh_snapshot_is_served_without_touching_the_database(open_: OpenStore) -> None:
    store = open_(refresh_interval=3600)
    store.upgrade()
    store.import_directory(ORG, [ANNA], [BOOKS_ANNA])
    first = store.snapshot(ORG)
    with counting_queries(store) as queries:
        for _ in range(1000):
            assert store.snapshot(ORG) is first
            assert store.snapshot(ORG, min_revision=1) is first
    assert queries == []


def test_a_write_through_this_store_is_visible_at_once(open_: OpenStore) -> None:
    store = open_(refresh_interval=3600)
    store.upgrade()
    store.import_directory(ORG, [ANNA], [])
    assert store.snapshot(ORG).revision == 1
    store.import_directory(ORG, [IVY], [])
    with counting_queries(store) as queries:
        snap = store.snapshot(ORG)
    assert snap.revision == 2 and IVY.id in snap.crm_users
    assert queries == []  # the write updated the cache itself


def test_another_replicas_write_is_picked_up_after_the_refresh_interval(open_: OpenStore) -> None:
    reader = open_(refresh_interval=0.05)
    writer = open_()
    writer.upgrade()
    writer.import_directory(ORG, [ANNA], [])
    assert reader.snapshot(ORG).revision == 1
    writer.import_directory(ORG, [IVY], [])
    assert eventually(lambda: reader.snapshot(ORG).revision == 2)
    assert set(reader.snapshot(ORG).crm_users) == {ANNA.id, IVY.id}


def test_an_unchanged_revision_is_confirmed_without_reloading_rows(open_: OpenStore) -> None:
    store = open_(refresh_interval=0.0)  # every call polls: shows what a poll costs
    store.upgrade()
    store.import_directory(ORG, [ANNA, IVY], [BOOKS_ANNA])
    first = store.snapshot(ORG)
    with counting_queries(store) as queries:
        assert store.snapshot(ORG) is first
    assert queries and all("directory_revision" in q and "crm_users" not in q for q in queries
                           if q.lstrip().upper().startswith("SELECT"))


def test_min_revision_reads_another_replicas_write_at_once(open_: OpenStore) -> None:
    a = open_(refresh_interval=3600)  # would never refresh by age within the test
    b = open_(refresh_interval=3600)
    a.upgrade()
    assert a.import_directory(ORG, [ANNA], []) == 1
    assert b.snapshot(ORG).revision == 1
    rev = a.import_directory(ORG, [IVY], [])
    assert b.snapshot(ORG).revision == 1  # cached, and nobody asked for more
    snap = b.snapshot(ORG, min_revision=rev)
    assert snap.revision == 2 and IVY.id in snap.crm_users
    assert b.snapshot(ORG) is snap


def test_an_unreachable_revision_fails_the_precondition(open_: OpenStore) -> None:
    store = open_(revision_wait=0.2)
    store.upgrade()
    store.import_directory(ORG, [ANNA], [])
    with pytest.raises(FailedPrecondition, match="directory revision 5 not reached; at 1"):
        store.snapshot(ORG, min_revision=5)
    with pytest.raises(FailedPrecondition, match="directory revision 1 not reached; at 0"):
        store.snapshot("nobody", min_revision=1)
    assert store.snapshot(ORG).revision == 1  # the cache is unharmed


def test_a_revision_committed_while_waiting_is_returned(open_: OpenStore) -> None:
    reader = open_(refresh_interval=3600, revision_wait=30)
    writer = open_()
    writer.upgrade()
    writer.import_directory(ORG, [ANNA], [])
    assert reader.snapshot(ORG).revision == 1
    started = threading.Event()

    def write_later() -> None:
        started.wait()
        time.sleep(0.05)
        writer.import_directory(ORG, [IVY], [])

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(write_later)
        started.set()
        snap = reader.snapshot(ORG, min_revision=2)
        future.result()
    assert snap.revision == 2


def test_concurrent_imports_keep_revisions_consistent(open_: OpenStore) -> None:
    setup = open_()
    setup.upgrade()
    stores = [open_(refresh_interval=0.01) for _ in range(4)]  # four replicas
    n = 16

    def work(i: int) -> tuple[int, int]:
        store = stores[i % len(stores)]
        user = CrmUser(f"u{i}", f"u{i}@acme.example", f"User {i}")
        rev = store.import_directory(ORG, [user], [])
        again = store.import_directory(ORG, [user], [])  # no change: no new revision
        snap = store.snapshot(ORG, min_revision=rev)
        assert f"u{i}" in snap.crm_users
        return rev, again

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(n)))
    revs = sorted(r for r, _ in results)
    assert revs == list(range(1, n + 1))  # each change got its own revision, none lost
    assert all(again >= rev for rev, again in results)
    final = setup.snapshot(ORG, min_revision=n)
    assert final.revision == n and len(final.crm_users) == n
    for store in stores:
        assert store.snapshot(ORG, min_revision=n) == final
    with setup.engine.connect() as conn:
        logged = conn.execute(sa.select(schema.directory_revisions.c.revision)).scalars().all()
    assert sorted(logged) == revs


def test_concurrent_readers_share_one_snapshot(open_: OpenStore) -> None:
    store = open_(refresh_interval=0.001)
    store.upgrade()
    store.import_directory(ORG, [ANNA, IVY], [BOOKS_ANNA])
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                snap = store.snapshot(ORG, min_revision=1)
                assert snap.revision == 1 and len(snap.crm_users) == 2
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _database_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: Any) -> int:
        raise sa.exc.OperationalError("SELECT directory_revision", {}, Exception("connection refused"))

    monkeypatch.setattr(Store, "_read_revision", staticmethod(fail))


def test_an_unreachable_database_serves_the_cached_snapshot_for_a_bounded_time(
        open_: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    tolerant = open_(refresh_interval=0.0, max_staleness=3600)
    strict = open_(refresh_interval=0.0, max_staleness=0.0)
    tolerant.upgrade()
    tolerant.import_directory(ORG, [ANNA], [])
    cached = tolerant.snapshot(ORG)
    assert strict.snapshot(ORG) == cached
    _database_down(monkeypatch)
    assert tolerant.snapshot(ORG) is cached
    with pytest.raises(sa.exc.OperationalError):
        strict.snapshot(ORG)
    with pytest.raises(sa.exc.OperationalError):  # a newer revision needs the database
        tolerant.snapshot(ORG, min_revision=2)


def test_one_store_wide_check_keeps_every_organization_fresh(open_: OpenStore) -> None:
    """Issue 13: one aggregate query confirms every cached organization at once (no poll
    per organization), and names the ones another replica changed, which then reload."""
    reader = open_(refresh_interval=0.3)
    writer = open_()
    writer.upgrade()
    orgs = [f"{ORG}-{n}" for n in range(5)]
    for org in orgs:
        writer.import_directory(org, [ANNA], [])
    firsts = {org: reader.snapshot(org) for org in orgs}
    time.sleep(0.35)  # every snapshot is now past its own refresh interval
    assert all(reader.cached(org) is None for org in orgs)
    with counting_queries(reader) as queries:
        reader.check_revisions()
    selects = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2  # the aggregate, then the revisions once (the table is new)
    with counting_queries(reader) as queries:
        assert all(reader.cached(org) is firsts[org] for org in orgs)
        reader.check_revisions()
    assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) == 1
    # nothing moved: the aggregate alone
    writer.import_directory(orgs[0], [IVY], [])
    reader.check_revisions()
    assert reader.cached(orgs[0]) is None  # behind the database: not served from memory
    assert all(reader.cached(org) is firsts[org] for org in orgs[1:])
    assert reader.snapshot(orgs[0]).revision == 2


def test_a_stale_decision_runs_one_store_wide_check_for_all(open_: OpenStore) -> None:
    """The first decision past the refresh interval checks every organization's revision
    in one query; the other organizations then answer from memory without a poll."""
    reader = open_(refresh_interval=0.3)
    writer = open_()
    writer.upgrade()
    orgs = [f"{ORG}-{n}" for n in range(5)]
    for org in orgs:
        writer.import_directory(org, [ANNA], [])
    firsts = {org: reader.snapshot(org) for org in orgs}
    time.sleep(0.35)
    with counting_queries(reader) as queries:
        assert reader.snapshot(orgs[0]) is firsts[orgs[0]]
        assert all(reader.cached(org) is firsts[org] for org in orgs)
    assert len([q for q in queries if "crm_users" in q]) == 0
    assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) <= 2


def test_ping_keeps_one_connection_and_survives_losing_it(open_: OpenStore) -> None:
    """The health probe (issue 13: idle CPU): SELECT 1 on a kept connection through its
    driver, no pool checkout, no revision read, nothing through SQLAlchemy's execute
    path per probe; a connection the server dropped is replaced."""
    store = open_()
    store.upgrade()
    store.ping()
    kept = store._ping_conn
    with counting_queries(store) as queries:
        store.ping()
    assert store._ping_conn is kept and queries == []
    assert kept is not None
    dropped = kept.connection.dbapi_connection
    kept.invalidate()  # as if the database had closed it
    store.ping()  # reconnected, not an outage
    assert store._ping_conn is not None
    assert store._ping_conn.connection.dbapi_connection is not dropped
    store.close()
    assert store._ping_conn is None  # closed with the store


def test_a_flood_of_unreachable_revisions_holds_only_a_few_threads(open_: OpenStore) -> None:
    """Each wait for a revision holds a worker thread: past the cap, a wait is refused at
    once instead of taking the threads every other organization's calls need."""
    store = open_(revision_wait=5, max_revision_waiters=1)
    store.upgrade()
    store.import_directory(ORG, [ANNA], [])
    def wait() -> None:
        with pytest.raises(FailedPrecondition, match="revision 99 not reached; at 1"):
            store.snapshot(ORG, min_revision=99)

    waiting = threading.Thread(target=wait)
    waiting.start()
    assert eventually(lambda: store._waiters._value == 0)  # the one wait holds the one slot
    with pytest.raises(FailedPrecondition, match="too many calls are waiting"):
        store.snapshot(ORG, min_revision=99)
    assert store.snapshot(ORG).revision == 1  # a call with nothing to wait for is answered
    waiting.join(10)
    assert not waiting.is_alive()
