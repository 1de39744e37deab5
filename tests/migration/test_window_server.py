"""DOMAIN.md §6 (revised) against a real server process, a real store and a real SMTP server.

- the window keeps the legacy behaviour (nobody locked out) until the migration is saved;
- the phased release reaching an organization starts its window, recorded by the server,
  and nothing is migrated that day;
- Migrate where the release has not arrived is refused, and nobody is e-mailed;
- the automatic migration counts allowed finance operations only (settings do not count);
- permission-set notices go out with the automatic migration switched off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import REPO, ServerProc, run_authz, start_server

from .conftest import Inbox

ACME = REPO / "authz/policies/orgs/acme-eu/tests/directory.yaml"
GLOBEX = REPO / "authz/policies/orgs/globex-us/tests/directory.yaml"
Stub = authz_pb2_grpc.AuthzServiceStub


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Inbox()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


def _env(port: int, **extra: str) -> dict[str, str]:
    return {"AUTHZ_SMTP_HOST": "127.0.0.1", "AUTHZ_SMTP_PORT": str(port),
            "AUTHZ_OUTBOX_INTERVAL": "0.1", "AUTHZ_RELEASE_INTERVAL": "0.1",
            "AUTHZ_MIGRATION_AUTO_INTERVAL": "0", "AUTHZ_NOTICE_INTERVAL": "0", **extra}


def _db(tmp_path: Path, directory: Path, drop_integration_users: bool = False) -> str:
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    run_authz("db", "upgrade", "--db", url)
    if drop_integration_users:  # an organization that has not migrated anybody yet
        text = directory.read_text().split("integration_users:")[0]
        directory = tmp_path / "directory.yaml"
        directory.write_text(text)
    run_authz("directory", "import", "--db", url, str(directory))
    return url


def _until(what: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sql(url: str, query: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(query), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _check(stub: Stub, org: str, user: str, action: str = "view", module: str = "invoices",
           rev: int = 0) -> pb.CheckResponse:
    resp: pb.CheckResponse = stub.Check(pb.CheckRequest(org_id=org, user=user, action=action,
                                                        module=module, min_revision=rev), timeout=5)
    return resp


@contextlib.contextmanager
def _serve(tmp_path: Path, url: str, env: dict[str, str], *extra: str) -> Iterator[Stub]:
    server: ServerProc = start_server(tmp_path, url, *extra, env=env)
    try:
        with grpc.insecure_channel(server.address) as ch:
            yield authz_pb2_grpc.AuthzServiceStub(ch)
    finally:
        assert server.stop() == 0, server.log()


def test_the_window_keeps_legacy_until_the_migration_is_saved(
        tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    url = _db(tmp_path, ACME, drop_integration_users=True)
    with _serve(tmp_path, url, _env(port)) as stub:
        preview = _until(lambda: (p := stub.Migrate(pb.MigrateRequest(org_id="acme-eu",
                                                                      caller="u-anna"), timeout=5))
                         .window_ends and p)
        today = dt.datetime.now(dt.UTC).date()
        assert preview.mode == pb.MODE_LEGACY and preview.window_ends > today.isoformat()
        for user in ("u-noah", "u-ivy", "u-sam"):  # nobody locked out during the window
            r = _check(stub, "acme-eu", user)
            assert r.decision == pb.DECISION_ALLOW and r.mode == pb.MODE_LEGACY, r.message
            assert f"window open until {preview.window_ends}" in r.message
        assert box.messages == []
        resp = stub.Migrate(pb.MigrateRequest(org_id="acme-eu", caller="u-anna", crm_user_ids=["u-noah"],
                                              mode=pb.MIGRATE_MODE_APPLY, request_key="save"), timeout=5)
        job = list(stub.WatchMigrationJob(pb.GetMigrationJobRequest(org_id="acme-eu", job_id=resp.job_id),
                                          timeout=20))[-1]
        noah = _check(stub, "acme-eu", "u-noah", "create", "estimates", job.directory_revision)
        assert noah.mode == pb.MODE_UNIFIED and noah.decision == pb.DECISION_ALLOW, noah.message
        assert noah.identity.integration_user_id == "iu-u-noah"
        ivy = _check(stub, "acme-eu", "u-ivy", rev=job.directory_revision)  # saved without her
        assert ivy.mode == pb.MODE_UNIFIED and ivy.reason == pb.REASON_NOT_MIGRATED
        _until(lambda: box.messages)
        assert box.notices() == ["acme-eu/u-noah/migrated/2"]  # told once they are live
        after = stub.Migrate(pb.MigrateRequest(org_id="acme-eu", caller="u-anna"), timeout=5)
        assert after.mode == pb.MODE_UNIFIED


def _policies(tmp_path: Path, release_us_enterprise: bool) -> Path:
    root = tmp_path / "policies"
    if not root.exists():
        shutil.copytree(REPO / "authz/policies", root)
    release = root / "shared/release.yaml"
    text = release.read_text()
    if release_us_enterprise:
        text = text.replace("[free, standard, professional, premium]",
                            "[free, standard, professional, premium, enterprise]")
    release.write_text(text)
    run_authz("policy", "compile", "--root", str(root))
    return root / "generated"


def test_the_release_reaching_an_organization_starts_its_window(
        tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    url = _db(tmp_path, GLOBEX)
    generated = _policies(tmp_path, release_us_enterprise=False)
    env = _env(port, AUTHZ_MIGRATION_AUTO_INTERVAL="0.2", AUTHZ_NOTICE_INTERVAL="0.2")
    with _serve(tmp_path, url, env, "--policy-dir", str(generated), "--reload-interval", "0.2") as stub:
        for _ in range(3):  # Homer works through the integration owner (legacy): usage
            assert _check(stub, "globex-us", "u-homer", "create").decision == pb.DECISION_ALLOW
        with pytest.raises(grpc.RpcError) as refused:
            stub.Migrate(pb.MigrateRequest(org_id="globex-us", caller="u-hank", crm_user_ids=["u-homer"],
                                           mode=pb.MIGRATE_MODE_APPLY, request_key="early"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot migrate yet" in (refused.value.details() or "")
        assert "not yet released to US enterprise" in (refused.value.details() or "")
        assert _sql(url, "SELECT * FROM org_migration WHERE org_id = 'globex-us'") == []

        _policies(tmp_path, release_us_enterprise=True)  # the phased release reaches it
        rows = _until(lambda: _sql(url, "SELECT release_reached_on, unified_by FROM org_migration "
                                        "WHERE org_id = 'globex-us'"))
        today = dt.datetime.now(dt.UTC).date()
        assert str(rows[0][0]) == today.isoformat() and rows[0][1] is None
        time.sleep(1.0)  # several automatic-migration and notice rounds
        r = _check(stub, "globex-us", "u-homer", "create")
        assert r.mode == pb.MODE_LEGACY and r.decision == pb.DECISION_ALLOW, r.message
        assert "window open until" in r.message
        assert _sql(url, "SELECT count(*) FROM migration_jobs")[0][0] == 0
        assert _sql(url, "SELECT count(*) FROM outbox")[0][0] == 0 and box.messages == []


def test_after_the_window_only_allowed_finance_operations_count(
        tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    url = _db(tmp_path, ACME, drop_integration_users=True)
    with _serve(tmp_path, url, _env(port)) as stub:  # the window: everything legacy, allowed
        _until(lambda: _sql(url, "SELECT 1 FROM org_migration WHERE org_id = 'acme-eu'"))
        for _ in range(5):
            assert _check(stub, "acme-eu", "u-noah", "view", "settings").decision == pb.DECISION_ALLOW
        assert _check(stub, "acme-eu", "u-ivy", "create", "estimates").decision == pb.DECISION_ALLOW
    # The window started four months ago (as the server would have recorded it then).
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=125)
    _sql(url, "UPDATE org_migration SET release_reached_on = :d WHERE org_id = 'acme-eu'", d=start)
    with _serve(tmp_path, url, _env(port, AUTHZ_MIGRATION_AUTO_INTERVAL="0.2")) as stub:
        _until(lambda: _sql(url, "SELECT 1 FROM migration_jobs WHERE kind = 'auto' AND state = 'done'"))
        rev = _sql(url, "SELECT directory_revision FROM organizations WHERE org_id = 'acme-eu'")[0][0]
        ivy = _check(stub, "acme-eu", "u-ivy", "create", "estimates", rev)
        assert ivy.mode == pb.MODE_UNIFIED and ivy.identity.integration_user_id == "iu-u-ivy"
        noah = _check(stub, "acme-eu", "u-noah", rev=rev)  # settings only: not a finance user
        assert noah.reason == pb.REASON_NOT_MIGRATED
        _until(lambda: box.messages)
        assert box.notices() == ["acme-eu/u-ivy/migrated/2"]


def test_permission_set_notices_go_out_with_automatic_migration_off(
        tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    url = _db(tmp_path, ACME)  # u-ivy was migrated elsewhere: never told of the current set
    with _serve(tmp_path, url, _env(port, AUTHZ_NOTICE_INTERVAL="0.2")) as _stub:
        _until(lambda: box.messages)
        time.sleep(0.5)
        assert box.notices() == ["acme-eu/u-ivy/permission_set/2"]
        assert _sql(url, "SELECT count(*) FROM migration_jobs")[0][0] == 0
