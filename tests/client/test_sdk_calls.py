"""The SDK's calls beyond Check against a real server: Attribute, ListFilter, Migrate,
ImportDirectory; deadlines that fit the server's waits; fail closed for each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from authz_client import (
    DEFAULT_DEADLINE,
    SERVER_UNAVAILABLE,
    AsyncAuthzClient,
    AuthzClient,
    AuthzRpcError,
    AuthzUnavailable,
    Record,
)
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server

ORG = "acme-eu"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
    seed(url)
    srv = start_server(tmp_path_factory.mktemp("server"), url)
    yield srv
    assert srv.stop() == 0, srv.log()


def test_default_deadline_outlasts_the_servers_revision_wait(server: ServerProc) -> None:
    """A revision that never arrives is FAILED_PRECONDITION after the server's 2 s wait,
    not a fail-closed 'server unavailable' because the client gave up first."""
    assert DEFAULT_DEADLINE > 2.0
    with AuthzClient(server.address) as c, pytest.raises(AuthzRpcError) as info:
        c.check(ORG, "u-sam", "view", "invoices", min_revision=10**9)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_attribute_and_list_filter_are_typed(server: ServerProc) -> None:
    with AuthzClient(server.address) as c:
        d = c.check(ORG, "u-sam", "create", "invoices",
                    record=Record(total=500.0))  # its approval rule reads the total
        a = c.attribute(ORG, "u-sam", "create", "invoices", record_id="inv-1",
                        decision_id=d.decision_id)
        assert (a.mode, a.product, a.act_as, a.identity.kind) == (
            "unified", "books", "b-sam", "finance_user")
        assert a.send_from_email == "sam@acme.example" and a.raw.decision_id == d.decision_id
        everything = c.list_filter(ORG, "u-fiona", "invoices")
        own = c.list_filter(ORG, "u-sam", "invoices", placeholder="dollar",
                            sql_columns={"owner": "owner_id"})
        nothing = c.list_filter(ORG, "u-noah", "invoices")
    assert everything.scope == "all" and nothing.scope == "none" and nothing.from_server
    assert own.scope in ("some", "all") and own.from_server
    if own.scope == "some":
        assert "$1" in own.sql_where and own.sql_params


def test_migrate_preview_apply_and_wait(server: ServerProc) -> None:
    with AuthzClient(server.address) as c:
        with pytest.raises(AuthzRpcError) as denied:
            c.migrate(ORG, "u-noah", "preview")
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        preview = c.migrate(ORG, "u-anna")
        assert "u-noah" in {m.crm_user_id for m in preview.integration_candidates}
        started = c.migrate(ORG, "u-anna", "apply", crm_user_ids=["u-noah"])  # key made up
        assert started.job is not None and started.job.request_key.startswith("sdk-")
        job = c.wait_migration_job(ORG, started.job_id, timeout=30)
        assert job.finished and job.done == 1 and job.results[0].integration_user_id
        r = c.check(ORG, "u-noah", "view", "estimates", min_revision=job.directory_revision)
    assert r.identity.kind == "integration_user"


def test_import_directory_from_a_dict(server: ServerProc) -> None:
    with AuthzClient(server.address) as c:
        rev = c.import_directory({"org_id": ORG, "crm_users": [
            {"id": "u-sdk", "email": "sdk@acme.example", "name": "Sdk User",
             "status": "CRM_USER_STATUS_ACTIVE"}]})
        r = c.check(ORG, "u-sdk", "view", "invoices", min_revision=rev)
        with pytest.raises(AuthzRpcError) as bad:
            c.import_directory({"org_id": "", "crm_users": []})
    assert r.directory_revision >= rev and not r.allowed
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_async_client_has_the_same_calls(server: ServerProc) -> None:
    async def run() -> None:
        async with AsyncAuthzClient(server.address) as c:
            a = await c.attribute(ORG, "u-sam", "view", "invoices", product="books")
            f = await c.list_filter(ORG, "u-fiona", "invoices")
            m = await c.migrate(ORG, "u-anna")
            many = await c.check_many([])
        assert (a.product, a.act_as) == ("books", "b-sam")
        assert f.scope == "all" and m.quota > 0 and many == []

    asyncio.run(run())


def test_no_server_fails_closed_for_every_call() -> None:
    address = f"127.0.0.1:{free_port()}"
    with AuthzClient(address, deadline=0.5, retries=0) as c:
        f = c.list_filter(ORG, "u-fiona", "invoices")
        assert (f.scope, f.reason, f.from_server) == ("none", SERVER_UNAVAILABLE, False)
        with pytest.raises(AuthzUnavailable):
            c.attribute(ORG, "u-sam", "view", "invoices")
        with pytest.raises(AuthzUnavailable):
            c.migrate(ORG, "u-anna")
    with AuthzClient(address, deadline=0.5, retries=0, fail_open=True) as c:
        assert c.list_filter(ORG, "u-fiona", "invoices").scope == "none"  # never opens lists
