"""Migrate over real gRPC against a real server process: killed mid-job, it resumes.

The server runs jobs in small, throttled batches here (AUTHZ_MIGRATION_BATCH/PAUSE) so
that SIGKILL lands mid-job; after a restart the job finishes with every user migrated
exactly once, and a Check at the job's revision sees the new integration users.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from authz.directory import CrmUser
from authz.store import open_store
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import AUTHZ, ServerProc, free_port, seed, server_env

ORG = "acme-eu"
N = 300


def _start(workdir: Path, db_url: str, **env: str) -> ServerProc:
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [AUTHZ, "serve", "--db", db_url, "--listen", f"127.0.0.1:{port}", "--log-level", "DEBUG"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**server_env(), "AUTHZ_MIGRATION_AUTO_INTERVAL": "0", **env})
    server = ServerProc(f"127.0.0.1:{port}", port, proc, log_path)
    server.wait_serving()
    return server


def test_killed_mid_job_resumes_and_check_sees_the_new_users(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(db_url)
    with open_store(db_url) as store:  # more CRM-only users than the example directory has
        store.import_directory(ORG, [CrmUser(f"m{i:03d}", f"m{i:03d}@acme.example", f"M {i}")
                                     for i in range(N)], [])
    ids = [f"m{i:03d}" for i in range(N)]
    server = _start(tmp_path, db_url, AUTHZ_MIGRATION_BATCH="10", AUTHZ_MIGRATION_PAUSE="0.05")
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            with pytest.raises(grpc.RpcError) as denied:
                stub.Migrate(pb.MigrateRequest(org_id=ORG, caller="u-noah"), timeout=5)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            preview = stub.Migrate(pb.MigrateRequest(org_id=ORG, caller="u-anna"), timeout=5)
            assert preview.slots_left == 999 and len(preview.integration_candidates) == N + 1
            with pytest.raises(grpc.RpcError) as dup:
                stub.Migrate(pb.MigrateRequest(org_id=ORG, caller="u-anna", mode=pb.MIGRATE_MODE_APPLY,
                                               crm_user_ids=["m001", "m001"], request_key="d"), timeout=5)
            assert dup.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            resp = stub.Migrate(pb.MigrateRequest(org_id=ORG, caller="u-anna", mode=pb.MIGRATE_MODE_APPLY,
                                                  crm_user_ids=ids, request_key="kill-test"), timeout=5)
            job_id = resp.job_id
            deadline = time.monotonic() + 20
            while True:
                job = stub.GetMigrationJob(pb.GetMigrationJobRequest(org_id=ORG, job_id=job_id,
                                                                     summary_only=True), timeout=5)
                if job.done >= 50 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        server.proc.kill()  # SIGKILL: no drain, no goodbye
        server.proc.wait()
        assert 0 < job.done < N
    finally:
        if server.proc.poll() is None:
            server.proc.kill()

    server = _start(tmp_path, db_url)  # picks the unfinished job up at start
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            updates = list(stub.WatchMigrationJob(pb.GetMigrationJobRequest(org_id=ORG, job_id=job_id),
                                                  timeout=20))
            final = updates[-1]
            assert final.state == pb.MIGRATION_STATE_DONE and (final.done, final.rejected) == (N, 0)
            assert [r.crm_user_id for r in final.results] == ids
            again = stub.Migrate(pb.MigrateRequest(org_id=ORG, caller="u-anna", mode=pb.MIGRATE_MODE_APPLY,
                                                   crm_user_ids=ids, request_key="kill-test"), timeout=5)
            assert again.job_id == job_id  # idempotent by request key
            check = stub.Check(pb.CheckRequest(org_id=ORG, user="m299", action="create", module="estimates",
                                               min_revision=final.directory_revision), timeout=5)
            assert check.decision == pb.DECISION_ALLOW, check.message
            assert check.identity.integration_user_id == "iu-m299"
            with pytest.raises(grpc.RpcError) as missing:
                stub.GetMigrationJob(pb.GetMigrationJobRequest(org_id=ORG, job_id="nope"), timeout=5)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        assert server.stop() == 0, server.log()
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        migrated = conn.execute(sa.text("SELECT count(*), count(DISTINCT crm_user_id) FROM integration_users "
                                        "WHERE crm_user_id LIKE 'm%'")).one()
        notices = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE kind = 'migrated'")).scalar()
    engine.dispose()
    assert tuple(migrated) == (N, N) and notices == N  # no duplicate, no lost user
