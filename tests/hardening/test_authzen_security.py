"""The AuthZEN HTTPS door with security on: the gRPC gate's callers, scopes and
organization limits, over one HTTPS port that takes a client certificate or a token."""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authz_server.edge.auth import check_config
from authz_server.process.config import Config, ConfigError
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server
from tests.hardening.conftest import wait_logged_serving, write_callers

ASK = {"subject": {"type": "user", "id": "u-sam", "properties": {"org_id": "acme-eu"}},
       "action": {"name": "view"}, "resource": {"type": "invoices", "id": "inv-1"}}


@dataclass
class Https:
    server: ServerProc
    certs: Path
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Https]:
    work = tmp_path_factory.mktemp("authzen-secure")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    tokens = {"batch-job": secrets.token_urlsafe(24), "admin": secrets.token_urlsafe(24)}
    write_callers(work / "callers.yaml", tokens)
    port = free_port()
    proc = start_server(work, url, "--tls-cert", str(certs / "server.pem"),
                        "--tls-key", str(certs / "server.key"),
                        "--tls-client-ca", str(certs / "ca.pem"),
                        "--callers", str(work / "callers.yaml"),
                        "--http-listen", f"127.0.0.1:{port}", wait=False)
    wait_logged_serving(proc)
    yield Https(proc, certs, f"https://localhost:{port}", tokens)
    assert proc.stop() == 0, proc.log()


def post(h: Https, path: str, body: Any, token: str | None = None, cert: str | None = None
         ) -> tuple[int, dict[str, str], Any]:
    ctx = ssl.create_default_context(cafile=str(h.certs / "ca.pem"))
    if cert:
        ctx.load_cert_chain(h.certs / f"{cert}.pem", h.certs / f"{cert}.key")
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(h.url + path, data=json.dumps(body).encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def other_org(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "subject": {**body["subject"], "properties": {"org_id": "globex-us"}}}


def test_bearer_token_and_client_certificate_share_the_port(https: Https) -> None:
    status, _, answer = post(https, "/access/v1/evaluation", ASK, token=https.tokens["batch-job"])
    assert status == 200 and answer["decision"] is True
    status, _, answer = post(https, "/access/v1/evaluation", ASK, cert="crm")
    assert status == 200 and answer["decision"] is True


def test_no_or_unknown_credentials_are_401(https: Https) -> None:
    for kwargs in ({}, {"token": "not-a-token"}, {"cert": "ops"}):  # ops: signed, not listed
        status, headers, answer = post(https, "/access/v1/evaluation", ASK, **kwargs)
        assert status == 401, kwargs
        assert answer["error"]["code"] == "UNAUTHENTICATED"
        assert headers["WWW-Authenticate"] == "Bearer"


def test_organization_limits_apply_to_every_item(https: Https) -> None:
    status, _, answer = post(https, "/access/v1/evaluation", other_org(ASK), cert="crm")
    assert status == 403 and "globex-us" in answer["error"]["message"]
    batch = {"evaluations": [ASK, other_org(ASK)]}
    status, _, answer = post(https, "/access/v1/evaluations", batch,
                             token=https.tokens["batch-job"])
    assert status == 403  # refused whole, as CheckBatch is
    status, _, answer = post(https, "/access/v1/search/resource",
                             other_org({**ASK, "resource": {"type": "invoices"}}), cert="crm")
    assert status == 403
    status, _, answer = post(https, "/access/v1/evaluations", batch, token=https.tokens["admin"])
    assert status == 200 and len(answer["evaluations"]) == 2


def test_discovery_is_open_and_names_https(https: Https) -> None:
    ctx = ssl.create_default_context(cafile=str(https.certs / "ca.pem"))
    with urllib.request.urlopen(https.url + "/.well-known/authzen-configuration", timeout=10,
                                context=ctx) as resp:
        meta = json.loads(resp.read())
    assert meta["policy_decision_point"] == https.url
    assert meta["access_evaluation_endpoint"] == https.url + "/access/v1/evaluation"


def test_http_port_off_loopback_needs_tls_and_callers() -> None:
    with pytest.raises(ConfigError, match=r"http_listen 0\.0\.0\.0:8181 is not loopback"):
        check_config(Config(http_listen="0.0.0.0:8181"))
    check_config(Config(http_listen="0.0.0.0:8181", allow_insecure=True))
