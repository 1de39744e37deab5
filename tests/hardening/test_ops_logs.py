"""Unauthenticated calls: each logged at DEBUG, at INFO a summary at most once a minute
(issue 14 item 5), on a secured server of this module's own (counts must be exact)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from authz_client import AuthzClient, AuthzRpcError
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server
from tests.hardening.conftest import wait_logged_serving, write_callers

CALLS = 25


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[tuple[ServerProc, int]]:
    work = tmp_path_factory.mktemp("unauth")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    tokens = {"batch-job": secrets.token_urlsafe(24), "admin": secrets.token_urlsafe(24)}
    write_callers(work / "callers.yaml", tokens)
    token_port = free_port()
    proc = start_server(work, url, "--tls-cert", str(certs / "server.pem"),
                        "--tls-key", str(certs / "server.key"),
                        "--tls-client-ca", str(certs / "ca.pem"),
                        "--callers", str(work / "callers.yaml"),
                        "--token-listen", f"127.0.0.1:{token_port}", wait=False)
    wait_logged_serving(proc)
    yield proc, token_port
    if proc.proc.poll() is None:
        assert proc.stop() == 0, proc.log()


def test_unauthenticated_calls_are_debug_with_one_info_summary(
        secured: tuple[ServerProc, int], certs: Path) -> None:
    proc, token_port = secured
    with AuthzClient(f"localhost:{token_port}", ca=certs / "ca.pem", token="wrong",
                     retries=0, on_unavailable="raise") as c:
        for _ in range(CALLS):
            with pytest.raises(AuthzRpcError) as err:
                c.check("acme-eu", "u-sam", "view", "invoices")
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert proc.stop() == 0
    records = [json.loads(line) for line in proc.log().splitlines() if line.strip()]
    each = [r for r in records if r["event"] == "unauthenticated"]
    summaries = [r for r in records if r["event"] == "unauthenticated_summary"]
    assert len(each) == CALLS and {r["level"] for r in each} == {"debug"}
    assert len(summaries) == 1 and summaries[0]["level"] == "info"
    assert summaries[0]["count"] == 1 and summaries[0]["by_method"] == {"Check": 1}
