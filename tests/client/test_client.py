"""The SDK's failure behaviour against real sockets: fail closed, retries, deadlines."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from authz_client import (
    SERVER_UNAVAILABLE,
    AsyncAuthzClient,
    AuthzClient,
    AuthzRpcError,
    CheckResult,
    query,
)
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server

ARGS = ("acme-eu", "u-sam", "view", "invoices")


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
    seed(url)
    return url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[ServerProc]:
    srv = start_server(tmp_path_factory.mktemp("server"), db_url)
    yield srv
    assert srv.stop() == 0, srv.log()


def closed_address() -> str:
    return f"127.0.0.1:{free_port()}"


def test_unreachable_server_fails_closed() -> None:
    with AuthzClient(closed_address(), deadline=0.3, retries=2, backoff=0.01) as c:
        r = c.check(*ARGS)
    assert not r.allowed and r.reason == SERVER_UNAVAILABLE
    assert not r.from_server and "failing closed" in r.message
    assert r.identity.kind == "none"


def test_unreachable_server_batch_fails_closed_per_item() -> None:
    with AuthzClient(closed_address(), deadline=0.3, retries=0) as c:
        results = c.check_batch([query(*ARGS), query(*ARGS)])
    assert [(r.allowed, getattr(r, "reason", "")) for r in results] == [
        (False, SERVER_UNAVAILABLE)] * 2


def test_fail_open_is_opt_in() -> None:
    with AuthzClient(closed_address(), deadline=0.3, retries=0, fail_open=True) as c:
        r = c.check(*ARGS)
    assert r.allowed and r.reason == SERVER_UNAVAILABLE and "failing open" in r.message


def test_raise_on_unavailable() -> None:
    with AuthzClient(closed_address(), deadline=0.3, retries=0, on_unavailable="raise") as c, \
            pytest.raises(AuthzRpcError) as info:
        c.check(*ARGS)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_retries_reach_a_server_that_comes_up_late(tmp_path: Path, db_url: str) -> None:
    """UNAVAILABLE is retried with backoff: a server starting during the retries answers."""
    port = free_port()
    holder: dict[str, ServerProc] = {}

    def start_later() -> None:
        time.sleep(0.6)
        holder["srv"] = start_server(tmp_path, db_url, port=port, wait=False)

    t = threading.Thread(target=start_later)
    t.start()
    try:
        with AuthzClient(f"127.0.0.1:{port}", deadline=2, retries=150, backoff=0.1,
                         max_backoff=0.3) as c:
            r = c.check(*ARGS)
        assert r.from_server and r.allowed, r.message
    finally:
        t.join()
        if "srv" in holder:
            assert holder["srv"].stop() == 0


def test_no_retry_budget_means_no_retry(tmp_path: Path) -> None:
    port = free_port()
    with AuthzClient(f"127.0.0.1:{port}", deadline=0.2, retries=0) as c:
        t0 = time.monotonic()
        r = c.check(*ARGS)
    assert r.reason == SERVER_UNAVAILABLE and time.monotonic() - t0 < 1.5


def test_deadline_exceeded_fails_closed() -> None:
    """A server that does not answer within the deadline counts as unavailable: a socket
    that accepts the connection and never speaks (the server's own waits now end before
    the call's deadline, so a real server answers FAILED_PRECONDITION in time)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        with AuthzClient(address, deadline=0.3, retries=0) as c:
            r = c.check(*ARGS)
    assert not r.allowed and r.reason == SERVER_UNAVAILABLE
    assert "DEADLINE_EXCEEDED" in r.message


def test_request_errors_raise_not_deny(server: ServerProc) -> None:
    with AuthzClient(server.address) as c, pytest.raises(AuthzRpcError) as info:
        c.check("acme-eu", "u-sam", "juggle", "invoices")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.violations] == ["action"]


def test_sync_client_against_real_server(server: ServerProc) -> None:
    with AuthzClient(server.address) as c:
        r = c.check(*ARGS)
    assert isinstance(r, CheckResult) and r.allowed and r.identity.books_user_id == "b-sam"


def test_async_client(server: ServerProc) -> None:
    async def run() -> None:
        async with AsyncAuthzClient(server.address) as c:
            r = await c.check(*ARGS)
            assert r.allowed and r.from_server
            batch = await c.check_batch([query(*ARGS), query("acme-eu", "u-noah", "view",
                                                              "invoices")])
            assert [getattr(b, "reason", "") for b in batch] == ["granted", "not_migrated"]
            with pytest.raises(AuthzRpcError):
                await c.check("acme-eu", "", "view", "invoices")
        async with AsyncAuthzClient(closed_address(), deadline=0.3, retries=1,
                                    backoff=0.01) as down:
            r = await down.check(*ARGS)
            assert not r.allowed and r.reason == SERVER_UNAVAILABLE

    asyncio.run(run())
