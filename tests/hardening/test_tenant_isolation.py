"""Tenant isolation at every door, tried as an attacker would, against a real server.

- A caller limited to one organization names another in an Envoy ext_authz request: it
  must be refused exactly as a gRPC Check for that organization is, with nothing decided
  and nothing written to that organization's audit trail.
- A store fault in strict audit mode (a trigger that refuses audit rows with a message of
  its own, as PostgreSQL or SQLite would with the SQL, its parameters or another
  organization's data): no door (Check, CheckBatch, Attribute, ext_authz, AuthZEN HTTP)
  may show a client the store's text; clients get a stable message and an ErrorInfo
  reason, the log gets the detail.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from authz_server.xds import envoy_service_auth_v3_attribute_context_pb2 as attr
from authz_server.xds import envoy_service_auth_v3_external_auth_pb2 as ext
from authz_server.xds import envoy_service_auth_v3_external_auth_pb2_grpc as ext_grpc
from tests.conftest import fresh_postgres_schema
from tests.e2e.serverproc import ServerProc, seed, start_server
from tests.hardening.conftest import Secure

SECRET = "s3cret-store-text"  # what the store says; must never reach a client


def ext_request(org: str, user: str = "u-sam", method: str = "GET") -> ext.CheckRequest:
    headers = {"x-authz-org": org, "x-authz-user": user, "x-authz-module": "invoices"}
    return ext.CheckRequest(attributes=attr.AttributeContext(request=attr.AttributeContext.Request(
        http=attr.AttributeContext.HttpRequest(method=method, headers=headers))))


def mtls_channel(s: Secure, name: str) -> grpc.Channel:
    c = s.certs
    creds = grpc.ssl_channel_credentials((c / "ca.pem").read_bytes(),
                                         (c / f"{name}.key").read_bytes(),
                                         (c / f"{name}.pem").read_bytes())
    return grpc.secure_channel(f"localhost:{s.server.port}", creds)


def admin_audit(s: Secure, org: str, user: str) -> list[pb.AuditEntry]:
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials((s.certs / "ca.pem").read_bytes()),
        grpc.access_token_call_credentials(s.tokens["admin"]))
    with grpc.secure_channel(f"localhost:{s.token_port}", creds) as ch:
        resp = pb_grpc.AuthzServiceStub(ch).QueryAudit(
            pb.QueryAuditRequest(org_id=org, user=user), timeout=5)
    return list(resp.entries)


# --- ext_authz names an organization its caller is not allowed for ----------------------

def test_ext_authz_refuses_an_organization_the_caller_is_not_allowed(secure: Secure) -> None:
    with mtls_channel(secure, "crm") as ch:  # crm: scope check, organization acme-eu only
        envoy = ext_grpc.AuthorizationStub(ch)
        own = envoy.Check(ext_request("acme-eu"), timeout=5)
        assert own.HasField("ok_response")  # its own organization is answered
        # The same caller, by gRPC Check, for globex-us: refused at the gate.
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.AuthzServiceStub(ch).Check(pb.CheckRequest(
                org_id="globex-us", user="u-probe", action="view", module="invoices"), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # And by ext_authz: refused too (403, no decision), for every method.
        for method in ("GET", "POST", "DELETE"):
            other = envoy.Check(ext_request("globex-us", "u-probe", method), timeout=5)
            assert other.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
            assert other.HasField("denied_response") and other.denied_response.status.code == 403
            body = json.loads(other.denied_response.body)
            assert body["reason"] == "organization_not_allowed" and "decision_id" not in body
            assert "globex-us" in body["message"]
    # Nothing was recorded in globex-us' trail for that user (not decided at all).
    assert admin_audit(secure, "globex-us", "u-probe") == []


# --- store text never reaches a client ----------------------------------------------------

def _poison_sqlite(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TRIGGER poison BEFORE INSERT ON audit_entries BEGIN "
            f"SELECT RAISE(ABORT, '{SECRET}: INSERT INTO audit_entries of acme-eu u-anna'); END"))
    engine.dispose()


def _poison_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
            f"RAISE EXCEPTION '{SECRET}: % %', NEW.org_id, NEW.crm_user; END $$ LANGUAGE plpgsql"))
        conn.execute(sa.text("CREATE TRIGGER poison BEFORE INSERT ON audit_entries "
                             "FOR EACH ROW EXECUTE FUNCTION poison()"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def faulty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    """A strict-audit server whose store refuses every audit row with text of its own (the
    queue pipeline: each call waits for the store's commit; on the log pipeline a call waits
    for the local log only, and the store's refusals reach the shipper, never a caller)."""
    queue = {"AUTHZ_AUDIT_PIPELINE": "queue"}
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'authz.db'}"
        seed(url)
        _poison_sqlite(url)
        server = start_server(tmp_path, url, "--audit-mode", "strict", http=True, env=queue)
        yield server
        server.stop()
        return
    with fresh_postgres_schema() as url:
        seed(url)
        _poison_postgres(url)
        server = start_server(tmp_path, url, "--audit-mode", "strict", http=True, env=queue)
        yield server
        server.stop()


def _reasons(status: Any) -> list[str]:
    out = []
    for d in status.details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            out.append(info.reason)
    return out


def test_no_door_shows_a_client_the_stores_text(faulty_store: ServerProc) -> None:
    server = faulty_store
    seen: list[str] = []  # everything a client was shown
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.AuthzServiceStub(ch)
        check = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view", module="invoices")
        for call in (lambda: stub.Check(check, timeout=10),
                     lambda: stub.CheckBatch(pb.CheckBatchRequest(requests=[check, check]),
                                             timeout=10),
                     lambda: stub.Attribute(pb.AttributeRequest(
                         org_id="acme-eu", user="u-sam", action="view", module="invoices",
                         product="books"),
                         timeout=10)):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            status = rpc_status.from_call(err.value)
            assert status is not None and _reasons(status) == ["AUDIT_UNAVAILABLE"]
            seen += [err.value.details() or "", str(status)]
        envoy = ext_grpc.AuthorizationStub(ch).Check(ext_request("acme-eu"), timeout=10)
        assert envoy.denied_response.status.code == 503
        seen += [str(envoy)]
    body = json.dumps({"subject": {"type": "user", "id": "u-sam",
                                   "properties": {"org_id": "acme-eu"}},
                       "action": {"name": "view"}, "resource": {"type": "invoices", "id": "r1"}})
    req = urllib.request.Request(server.http_url + "/access/v1/evaluation", data=body.encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(req, timeout=10)
    assert http_err.value.code == 503
    answer = http_err.value.read().decode()
    assert json.loads(answer)["error"]["reason"] == "AUDIT_UNAVAILABLE"
    seen.append(answer)
    for text in seen:
        assert SECRET not in text and "INSERT" not in text and "u-anna" not in text, text
    assert SECRET in server.log()  # the detail is for operators
