"""Operating the server: health, reflection (driven by grpcurl), directory import,
the `authz check` command, configuration errors, and the SIGTERM drain."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from authz import directory_file
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from authz_client import AuthzClient, AuthzRpcError
from tests.e2e.serverproc import BIN, REPO, ServerProc, run_authz, seed, start_server

GRPCURL = str(BIN / "grpcurl")
GLOBEX = REPO / "authz/policies/orgs/globex-us/tests/directory.yaml"


def grpcurl(server: ServerProc, *args: str) -> subprocess.CompletedProcess[str]:
    """grpcurl [flags] ADDRESS VERB [SYMBOL]: args are the verb and its symbol."""
    return subprocess.run([GRPCURL, "-plaintext", "-max-time", "10", server.address, *args],
                          capture_output=True, text=True, timeout=30)


def test_health_serving(server: ServerProc) -> None:
    assert server.health("") == health_pb2.HealthCheckResponse.SERVING
    assert server.health("authz.v1.AuthzService") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(server: ServerProc) -> None:
    out = grpcurl(server, "list")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) >= {"authz.v1.AuthzService", "grpc.health.v1.Health"}
    described = grpcurl(server, "describe", "authz.v1.CheckRequest")
    assert "min_revision" in described.stdout


def test_grpcurl_check_via_reflection(server: ServerProc) -> None:
    body = {"org_id": "acme-eu", "user": "u-sam", "action": "create", "module": "invoices",
            "record": {"total": 20000}, "write_fields": ["discount"]}
    out = subprocess.run([GRPCURL, "-plaintext", "-d", json.dumps(body), server.address,
                          "authz.v1.AuthzService/Check"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    resp = json.loads(out.stdout)
    assert resp["decision"] == "DECISION_DENY"
    assert resp["reason"] == "REASON_FIELD_NOT_WRITABLE"
    assert resp["identity"]["crm_user_id"] == "u-sam"


def test_grpcurl_shows_field_violation(server: ServerProc) -> None:
    body = {"org_id": "acme-eu", "user": "u-sam", "action": "view", "module": "bananas"}
    out = subprocess.run([GRPCURL, "-plaintext", "-d", json.dumps(body), server.address,
                          "authz.v1.AuthzService/Check"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "InvalidArgument" in out.stderr and "module" in out.stderr


def _import_request(path: Path) -> pb.ImportDirectoryRequest:
    df = directory_file.read(path)
    req = pb.ImportDirectoryRequest(org_id=df.org_id)
    for u in df.crm_users:
        req.crm_users.add(id=u.id, email=u.email, name=u.name, is_admin=u.is_admin,
                          status=pb.CRM_USER_STATUS_DISABLED if u.status == "disabled"
                          else pb.CRM_USER_STATUS_ACTIVE)
    for f in df.finance_users:
        users = req.books_users if f.product == "books" else req.subscriptions_users
        users.add(user_id=f.user_id, email=f.email, name=f.name, role_id=f.role_id,
                  locations=f.locations, assigned_customers=sorted(f.assigned_customers),
                  status=pb.FINANCE_USER_STATUS_INACTIVE
                  if f.status == "inactive" else pb.FINANCE_USER_STATUS_ACTIVE)
    for i in df.integration_users:
        req.integration_users.add(crm_user_id=i.crm_user_id, integration_user_id=i.integration_user_id)
    return req


def test_import_directory_then_read_your_writes(client: AuthzClient) -> None:
    req = _import_request(GLOBEX)
    first = client.import_directory(req)
    again = client.import_directory(req)  # idempotent: same users, still valid
    assert again >= first >= 1
    r = client.check(req.org_id, req.crm_users[0].id, "view", "invoices", min_revision=again)
    assert r.directory_revision >= again


def test_import_directory_rejects_bad_users(client: AuthzClient) -> None:
    req = pb.ImportDirectoryRequest(org_id="globex-us")
    req.crm_users.add(id="u-x", email="x@example.com")
    req.integration_users.add(crm_user_id="u-missing", integration_user_id="iu-1")
    with pytest.raises(AuthzRpcError) as info:
        client.import_directory(req)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.violations] == ["integration_users[0].crm_user_id"]


def test_min_revision_not_reached_is_failed_precondition(client: AuthzClient) -> None:
    with pytest.raises(AuthzRpcError) as info:
        client.check("acme-eu", "u-sam", "view", "invoices", min_revision=10**9, timeout=10)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_check_command(server: ServerProc) -> None:
    out = run_authz("check", "--server", server.address, "--org", "acme-eu", "--user", "u-fiona",
                    "--action", "create", "--module", "invoices", "--total", "20000",
                    "--write-field", "discount", check=False)
    assert out.returncode == 0, out.stderr
    assert "ALLOW (granted)" in out.stdout and "Fiona Keller" in out.stdout
    assert "approval:  pending_approval" in out.stdout
    denied = run_authz("check", "--server", server.address, "--org", "acme-eu", "--user", "u-sam",
                       "--action", "create", "--module", "invoices", "--total", "20000",
                       "--write-field", "discount", check=False)
    assert denied.returncode == 1 and "DENY (field_not_writable)" in denied.stdout
    bad = run_authz("check", "--server", server.address, "--org", "acme-eu", "--user", "u-sam",
                    "--action", "create", "--module", "bananas", check=False)
    assert bad.returncode == 2 and "field module" in bad.stderr


def test_directory_import_reports_located_errors(tmp_path: Path, db_url: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("org: acme-eu\ncrm_users:\n  - {id: u-a, email: not-an-email}\n")
    out = run_authz("directory", "import", "--db", db_url, str(bad), check=False)
    assert out.returncode == 2
    assert f"{bad}:3:" in out.stderr and "invalid e-mail" in out.stderr


def test_serve_rejects_bad_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "authz.toml"
    cfg.write_text('listen = "127.0.0.1:0"\nlog_levle = "DEBUG"\n')
    out = run_authz("serve", "--config", str(cfg), check=False)
    assert out.returncode == 2 and "log_levle" in out.stderr


def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    """A call in flight when SIGTERM arrives still gets its answer; then the process exits 0."""
    url = f"sqlite:///{tmp_path / 'drain.db'}"
    seed(url)
    srv = start_server(tmp_path, url, "--grace", "10")
    outcome: dict[str, object] = {}

    def slow_call() -> None:
        # min_revision never reached: the store waits its bounded time, then answers.
        with grpc.insecure_channel(srv.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            req = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view",
                                  module="invoices", min_revision=10**9)
            try:
                stub.Check(req, timeout=20)
            except grpc.RpcError as err:
                outcome["code"] = err.code()

    t = threading.Thread(target=slow_call)
    started = time.monotonic()
    t.start()
    time.sleep(0.5)
    code = srv.stop()
    t.join(20)
    assert outcome.get("code") == grpc.StatusCode.FAILED_PRECONDITION, srv.log()
    assert code == 0, srv.log()
    assert time.monotonic() - started < 10
    events = [json.loads(line)["event"] for line in srv.log().splitlines() if line.startswith("{")]
    assert events.index("signal") < events.index("draining") < events.index("stopped")
