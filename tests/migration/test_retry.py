"""Migration jobs through store faults (issue 11, item 8): a dropped connection mid-job is
retried with backoff and the job finishes, every user migrated exactly once; an error
that persists fails the job and frees its quota slots. Never RUNNING for good.

Real PostgreSQL: the job's connections are killed with pg_terminate_backend, as a
failover or an administrator would; and a real server process for the same on the RPCs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from authz.directory import CrmUser
from authz.migration.retry import run_job_retrying
from authz.migration.service import MigrationStore
from authz.migration.settings import OrgSettings
from authz.store import Store, open_store
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.conftest import fresh_postgres_schema
from tests.e2e.serverproc import run_authz, start_server

from .conftest import ADMIN, ORG

N = 60


@pytest.fixture
def pg_app() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema, and a URL whose connections carry an application name
    of their own, so that the test can kill exactly them."""
    with fresh_postgres_schema() as url:
        name = f"authz-job-{uuid.uuid4().hex[:8]}"
        yield f"{url}&application_name={name}", name


def _kill_mid_batch(url: str, app: str) -> int:
    """Hold the organization's row so that the job's next batch waits for it inside its
    transaction, terminate that backend (mid-batch, for certain), then let go. Returns the
    backend killed."""
    engine = sa.create_engine(url.split("&application_name=")[0])
    try:
        with engine.connect() as locker, engine.connect() as admin:
            with locker.begin():
                locker.execute(sa.text("SELECT 1 FROM organizations WHERE org_id = :o FOR UPDATE"),
                               {"o": ORG})
                deadline = time.monotonic() + 20
                while True:
                    waiting = admin.execute(sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = :a "
                        "AND wait_event_type = 'Lock'"), {"a": app}).scalars().all()
                    admin.commit()
                    if waiting:
                        break
                    assert time.monotonic() < deadline, "the job never reached its next batch"
                    time.sleep(0.01)
                admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": waiting[0]})
                admin.commit()
                # Termination is asynchronous: until the backend is gone it may still be
                # listed as waiting, and the next kill would pick the same one again.
                while admin.execute(sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"),
                                    {"p": waiting[0]}).first() is not None:
                    admin.commit()
                    assert time.monotonic() < deadline + 20, "the killed backend never exited"
                    time.sleep(0.01)
                admin.commit()
            return int(waiting[0])
    finally:
        engine.dispose()


def _users() -> list[CrmUser]:
    return [CrmUser(f"m{i:03d}", f"m{i:03d}@acme.example", f"M {i}") for i in range(N)]


def _count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


@pytest.mark.postgres
def test_a_dropped_connection_mid_job_is_retried_and_the_job_finishes(
        pg_app: tuple[str, str]) -> None:
    url, app = pg_app
    store = open_store(url, upgrade=True)
    try:
        store.import_directory(ORG, [ADMIN, *_users()], [])
        ms = MigrationStore(store, lambda o: OrgSettings(), usage=lambda o: {})
        job = ms.apply(ORG, "admin", [u.id for u in _users()], "faults")
        retries: list[str] = []
        result: list[object] = []
        runner = threading.Thread(target=lambda: result.append(run_job_retrying(
            ms, ORG, job.job_id, batch_size=5, pause=0.05, base_delay=0.05, max_delay=0.5,
            on_retry=lambda exc, n, delay: retries.append(type(exc).__name__))))
        runner.start()
        killed = {_kill_mid_batch(url, app) for _ in range(3)}  # three batches lose their connection
        runner.join(60)
        assert not runner.is_alive() and len(killed) == 3
        final = ms.job(ORG, job.job_id)
        assert len(retries) == 3, retries
        assert (final.state, final.done, final.rejected, final.failed) == ("done", N, 0, False)
        assert _count(store, "SELECT count(DISTINCT crm_user_id) FROM integration_users") == N
        assert _count(store, "SELECT count(*) FROM outbox") == N  # one notice each, no duplicate
    finally:
        store.close()


def test_an_error_that_persists_fails_the_job_and_frees_its_slots(seeded: Store) -> None:
    ms = MigrationStore(seeded, lambda o: OrgSettings(quota=45), usage=lambda o: {})
    ids = [f"u{i:04d}" for i in range(40)]
    job = ms.apply(ORG, "admin", ids, "broken")
    with seeded.engine.begin() as conn:  # a store that cannot take the notices any more
        conn.execute(sa.text("DROP TABLE outbox"))
    final = run_job_retrying(ms, ORG, job.job_id, base_delay=0.01, attempts=3)
    assert final is not None and final.state == "done" and final.failed
    assert {i.reason for i in final.items} == {"job_failed"} and final.rejected == 40
    assert "store error" in final.items[0].message and "DROP" not in final.items[0].message
    assert ms.unfinished() == []
    with seeded.engine.begin() as conn:
        assert ms._reserved(conn, ORG) == set()  # the 40 slots are free again


@pytest.mark.postgres
def test_the_server_finishes_a_job_whose_connections_are_killed(
        pg_app: tuple[str, str], tmp_path: Path) -> None:
    url, app = pg_app
    run_authz("db", "upgrade", "--db", url)
    with open_store(url) as store:
        store.import_directory(ORG, [ADMIN, *_users()], [])
    server = start_server(tmp_path, url, env={"AUTHZ_MIGRATION_BATCH": "5",
                                              "AUTHZ_MIGRATION_PAUSE": "0.1",
                                              "AUTHZ_MIGRATION_AUTO_INTERVAL": "0"})
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            resp = stub.Migrate(pb.MigrateRequest(
                org_id=ORG, caller="admin", mode=pb.MIGRATE_MODE_APPLY,
                crm_user_ids=[u.id for u in _users()], request_key="server-faults"), timeout=10)
            for _ in range(2):
                _kill_mid_batch(url, app)
            deadline = time.monotonic() + 60
            while True:
                try:
                    job = stub.GetMigrationJob(pb.GetMigrationJobRequest(
                        org_id=ORG, job_id=resp.job_id, summary_only=True), timeout=5)
                    if job.state == pb.MIGRATION_STATE_DONE:
                        break
                except grpc.RpcError:
                    pass  # this call's own connection may have been the one killed
                assert time.monotonic() < deadline, "job stuck:\n" + server.log()[-3000:]
                time.sleep(0.1)
            assert (job.done, job.rejected) == (N, 0)
        assert server.log().count('"migration_job_retry"') == 2
    finally:
        assert server.stop() == 0, server.log()
