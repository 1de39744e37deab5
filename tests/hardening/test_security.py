"""Who may call: mTLS, bearer tokens, scopes, organizations, against a real server."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.v1 import authz_pb2 as pb
from authz_client import AuthzClient, AuthzRpcError
from authz_server.edge.auth import check_config, scope_for
from authz_server.process.config import Config, ConfigError
from tests.e2e.serverproc import REPO, run_authz
from tests.hardening.conftest import Secure


def mtls(s: Secure, name: str) -> AuthzClient:
    c = s.certs
    return AuthzClient(f"localhost:{s.server.port}", ca=c / "ca.pem", cert=c / f"{name}.pem",
                       key=c / f"{name}.key", deadline=5, retries=0, on_unavailable="raise")


def token(s: Secure, tok: str | None) -> AuthzClient:
    return AuthzClient(f"localhost:{s.token_port}", ca=s.certs / "ca.pem", token=tok, deadline=5,
                       retries=0, on_unavailable="raise")


def code_of(fn: object) -> grpc.StatusCode:
    with pytest.raises(AuthzRpcError) as err:
        fn()  # type: ignore[operator]
    return err.value.code


def test_mtls_caller_with_scope_and_org_is_answered(secure: Secure) -> None:
    with mtls(secure, "crm") as c:
        assert c.check("acme-eu", "u-sam", "view", "invoices").allowed


def test_mtls_caller_outside_its_organizations_is_denied(secure: Secure) -> None:
    with mtls(secure, "crm") as c:
        assert code_of(lambda: c.check("globex-us", "u-sam", "view", "invoices")) == \
            grpc.StatusCode.PERMISSION_DENIED


def test_mtls_caller_without_scope_is_denied(secure: Secure) -> None:
    with mtls(secure, "crm") as c:
        assert code_of(lambda: c.import_directory(pb.ImportDirectoryRequest(org_id="acme-eu"))) == \
            grpc.StatusCode.PERMISSION_DENIED


def test_certificate_of_an_unlisted_service_is_unauthenticated(secure: Secure) -> None:
    with mtls(secure, "ops") as c:  # signed by the CA, but not in the callers file
        assert code_of(lambda: c.check("acme-eu", "u-sam", "view", "invoices")) == \
            grpc.StatusCode.UNAUTHENTICATED


def test_mtls_port_refuses_a_client_without_certificate(secure: Secure) -> None:
    c = AuthzClient(f"localhost:{secure.server.port}", ca=secure.certs / "ca.pem", deadline=3,
                    retries=0, on_unavailable="raise")
    with c, pytest.raises(AuthzRpcError) as err:
        c.check("acme-eu", "u-sam", "view", "invoices")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def test_bearer_tokens(secure: Secure) -> None:
    with token(secure, secure.tokens["batch-job"]) as c:
        assert c.check("acme-eu", "u-sam", "view", "invoices").allowed
        assert code_of(lambda: c.check("globex-us", "u-sam", "view", "invoices")) == \
            grpc.StatusCode.PERMISSION_DENIED
        # A batch is refused whole when one item names an organization not allowed.
        q = [("acme-eu", "u-sam"), ("globex-us", "u-sam")]
        from authz_client import query
        assert code_of(lambda: c.check_batch([query(o, u, "view", "invoices") for o, u in q])) == \
            grpc.StatusCode.PERMISSION_DENIED
    with token(secure, "not-a-token") as c:
        assert code_of(lambda: c.check("acme-eu", "u-sam", "view", "invoices")) == \
            grpc.StatusCode.UNAUTHENTICATED
    with token(secure, None) as c:
        assert code_of(lambda: c.check("acme-eu", "u-sam", "view", "invoices")) == \
            grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_no_credentials_and_metrics_count_refusals(secure: Secure) -> None:
    creds = grpc.ssl_channel_credentials((secure.certs / "ca.pem").read_bytes())
    with grpc.secure_channel(f"localhost:{secure.token_port}", creds) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with token(secure, "wrong") as c:
        code_of(lambda: c.check("acme-eu", "u-sam", "view", "invoices"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{secure.metrics_port}/metrics", timeout=5).read()
    assert b'authz_auth_failures_total{code="UNAUTHENTICATED"}' in text
    assert b"authz_decision_duration_seconds_bucket" in text


def test_cli_check_with_certificate_and_token(secure: Secure) -> None:
    c = secure.certs
    out = run_authz("check", "--server", f"localhost:{secure.server.port}", "--ca", str(c / "ca.pem"),
                    "--cert", str(c / "crm.pem"), "--key", str(c / "crm.key"), "--org", "acme-eu",
                    "--user", "u-sam", "--action", "view", "--module", "invoices", check=False)
    assert out.returncode == 0, out.stderr
    tok = c.parent / "tok"
    tok.write_text(secure.tokens["batch-job"])
    out = run_authz("check", "--server", f"localhost:{secure.token_port}", "--ca", str(c / "ca.pem"),
                    "--token-file", str(tok), "--org", "globex-us", "--user", "u-sam", "--action",
                    "view", "--module", "invoices", check=False)
    assert out.returncode == 2 and "PERMISSION_DENIED" in out.stderr


def test_dev_certs_command(tmp_path: Path) -> None:
    out = run_authz("dev-certs", str(tmp_path / "d"))
    assert "authz serve --tls-cert" in out.stdout
    names = {p.name for p in (tmp_path / "d").iterdir()}
    assert {"ca.pem", "server.pem", "server.key", "crm.pem", "batch-job.token", "callers.yaml"} <= names
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "d/ca.pem"),
                             str(tmp_path / "d/server.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_open_server_off_loopback_is_refused() -> None:
    with pytest.raises(ConfigError, match="not loopback"):
        check_config(Config(listen="0.0.0.0:50051"))
    with pytest.raises(ConfigError, match="callers_file"):
        check_config(Config(listen="0.0.0.0:50051", tls_cert="c", tls_key="k"))
    check_config(Config(listen="0.0.0.0:50051", allow_insecure=True))
    check_config(Config(listen="127.0.0.1:0"))
    out = run_authz("serve", "--listen", "0.0.0.0:0", check=False)
    assert out.returncode == 2 and "not loopback" in out.stderr


def test_every_rpc_maps_to_a_scope() -> None:
    from authz.v1 import authz_pb2
    for m in authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].methods:
        assert scope_for(f"/authz.v1.AuthzService/{m.name}") is not None, m.name
    assert scope_for("/authz.v1.AuthzService/SomethingNew") is None  # new RPCs fail closed


def test_callers_file_errors_name_the_entry(tmp_path: Path) -> None:
    from authz_server.edge.auth import Callers
    f = tmp_path / "callers.yaml"
    f.write_text("callers:\n  - name: x\n    scopes: [chek]\n    orgs: ['*']\n    certs: [x]\n")
    with pytest.raises(ConfigError, match=r"callers\[0\].*chek"):
        Callers.load(f)
    f.write_text("callers:\n  - name: x\n    scopes: [check]\n    orgs: ['*']\n    tokens: [plain]\n")
    with pytest.raises(ConfigError, match="hashed"):
        Callers.load(f)
    assert (REPO / "SECURITY.md").is_file()
