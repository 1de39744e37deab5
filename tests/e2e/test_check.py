"""Check and CheckBatch against a real server on the example organization acme-eu."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from authz_client import AuthzClient, AuthzRpcError, CheckError, CheckResult, query

ORG = "acme-eu"

# (user, action, module, extra Check arguments, allowed, reason)
CASES: list[tuple[str, str, str, dict[str, Any], bool, str]] = [
    ("u-sam", "view", "invoices", {}, True, "granted"),
    ("u-sam", "create", "invoices", {"write_fields": ["discount"]}, False, "field_not_writable"),
    ("u-sam", "delete", "invoices", {}, False, "action_not_granted"),
    ("u-quinn", "create", "estimates", {"record": {"owner": "u-quinn"}}, True, "granted"),
    ("u-quinn", "edit", "estimates", {"record": {"owner": "u-sam", "status": "draft"}},
     False, "out_of_scope"),
    ("u-quinn", "create", "invoices", {"record": {"owner": "u-quinn"}}, False, "action_not_granted"),
    ("u-fiona", "schedule", "reports", {"product": "books"}, True, "granted"),
    ("u-anna", "delete", "invoices", {"record": {"status": "draft"}}, True, "granted"),
    ("u-ivy", "create", "estimates", {}, True, "granted"),
    ("u-ivy", "view", "invoices", {"channel": "direct"}, False, "no_direct_access"),
    ("u-ivy", "delete", "estimates", {}, False, "action_not_granted"),
    ("u-noah", "view", "invoices", {}, False, "not_migrated"),
    ("u-olga", "view", "invoices", {}, False, "crm_user_disabled"),
    ("u-ian", "view", "invoices", {}, False, "finance_user_inactive"),
    ("u-lena", "view", "invoices", {"record": {"location": "berlin"}}, True, "granted"),
    ("u-lena", "view", "invoices", {"record": {"location": "munich"}}, False,
     "location_not_allowed"),
    ("u-bea", "view", "subscriptions", {}, True, "granted"),
    ("u-bea", "create", "subscriptions", {}, False, "action_not_granted"),
    ("u-nobody", "view", "invoices", {}, False, "user_unknown"),
]


@pytest.mark.parametrize(("user", "action", "module", "extra", "allowed", "reason"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[5]}" for c in CASES])
def test_check_decisions(client: AuthzClient, user: str, action: str, module: str,
                         extra: dict[str, Any], allowed: bool, reason: str) -> None:
    r = client.check(ORG, user, action, module, **extra)
    assert (r.allowed, r.reason) == (allowed, reason), r.message
    assert r.from_server and len(r.decision_id) >= 16
    assert r.policy_revision and r.directory_revision >= 1
    assert r.decided_at is not None and r.org_id == ORG
    assert r.mode == "unified"


def test_allow_carries_identity_fields_and_approval(client: AuthzClient) -> None:
    r = client.check(ORG, "FIONA@acme.example", "create", "invoices", record={"total": 20000.0},
                     read_fields=["internal_notes", "discount"], explain=True)
    assert r.allowed and r.reason == "granted"
    ident = r.identity
    assert (ident.kind, ident.crm_user_id, ident.books_user_id) == ("finance_user", "u-fiona",
                                                                   "b-fiona")
    assert ident.display_name == "Fiona Keller" and ident.email == "fiona@acme.example"
    assert "books:finance_manager" in ident.roles
    assert r.approval is not None and r.approval.outcome == "pending_approval"
    assert r.approval.level == 1 and r.approval.levels >= 1
    assert r.approval.approver_roles
    assert r.matched_rules, "explain returns the matched Casbin lines"


def test_hidden_and_read_only_fields(client: AuthzClient) -> None:
    r = client.check(ORG, "u-ivy", "view", "invoices", read_fields=["internal_notes"])
    assert r.allowed
    assert "internal_notes" in r.hidden_fields
    assert "payment_terms" in r.read_only_fields
    assert r.identity.kind == "integration_user" and r.identity.integration_user_id == "iu-ivy"


def test_blocked_until_approved(client: AuthzClient) -> None:
    r = client.check(ORG, "u-sam", "email", "invoices", record={"status": "pending_approval"})
    assert not r.allowed and r.reason == "blocked_until_approved"
    assert r.blocked_until_approved


def _violation(err: grpc.RpcError) -> tuple[grpc.StatusCode, list[str]]:
    status = rpc_status.from_call(err)
    assert status is not None, "error carries google.rpc.Status details"
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return err.code(), fields


def _req(**kw: Any) -> pb.CheckRequest:
    base: dict[str, Any] = {"org_id": ORG, "user": "u-sam", "action": "view", "module": "invoices"}
    base.update(kw)
    return pb.CheckRequest(**base)


@pytest.mark.parametrize(("request_", "field"), [
    (_req(module="bananas"), "module"),
    (_req(action="juggle"), "action"),
    (_req(user=""), "user"),
    (_req(user="   "), "user"),
    (_req(channel=7), "channel"),  # type: ignore[arg-type]
    (_req(record=pb.Record(total={"value": math.nan})), "record.total"),
    (_req(record=pb.Record(total={"value": math.inf})), "record.total"),
    (_req(record=pb.Record(status="lost")), "record.status"),
    (_req(record=pb.Record(approval_level=99)), "record.approval_level"),
    (_req(product="crm"), "product"),
    (_req(write_fields=["bad field!"]), "write_fields"),
    (_req(min_revision=-1), "min_revision"),
    (_req(org_id=""), "org_id"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_argument_names_the_field(stub: authz_pb2_grpc.AuthzServiceStub,
                                          request_: pb.CheckRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(request_, timeout=5)
    code, fields = _violation(info.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == [field]


def test_sdk_surfaces_field_violations(client: AuthzClient) -> None:
    with pytest.raises(AuthzRpcError) as info:
        client.check(ORG, "u-sam", "view", "bananas")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.violations] == ["module"]


def test_unknown_organization_is_not_found(stub: authz_pb2_grpc.AuthzServiceStub,
                                           client: AuthzClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(_req(org_id="no-such-org"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-org" in (info.value.details() or "")
    with pytest.raises(AuthzRpcError) as sdk:
        client.check("no-such-org", "u-sam", "view", "invoices")
    assert sdk.value.code == grpc.StatusCode.NOT_FOUND


def test_batch_keeps_order_and_isolates_errors(client: AuthzClient) -> None:
    queries = [
        query(ORG, "u-sam", "view", "invoices"),
        query(ORG, "u-sam", "view", "bananas"),
        query(ORG, "u-noah", "view", "invoices"),
        query("no-such-org", "u-sam", "view", "invoices"),
        query(ORG, "", "view", "invoices"),
        query(ORG, "u-bea", "view", "subscriptions"),
    ]
    results = client.check_batch(queries)
    assert len(results) == len(queries)
    r0, r1, r2, r3, r4, r5 = results
    assert isinstance(r0, CheckResult) and r0.allowed
    assert isinstance(r1, CheckError) and r1.code == "INVALID_ARGUMENT"
    assert [v.field for v in r1.violations] == ["requests[1].module"]
    assert isinstance(r2, CheckResult) and r2.reason == "not_migrated"
    assert isinstance(r3, CheckError) and r3.code == "NOT_FOUND"
    assert isinstance(r4, CheckError) and [v.field for v in r4.violations] == ["requests[4].user"]
    assert isinstance(r5, CheckResult) and r5.allowed and r5.identity.crm_user_id == "u-bea"
    assert len({r.decision_id for r in (r0, r2, r5)}) == 3


def test_batch_limit(stub: authz_pb2_grpc.AuthzServiceStub, client: AuthzClient) -> None:
    ok = client.check_batch([query(ORG, "u-sam", "view", "invoices")] * 1000)
    assert len(ok) == 1000 and all(r.allowed for r in ok)
    with pytest.raises(grpc.RpcError) as info:
        stub.CheckBatch(pb.CheckBatchRequest(requests=[_req()] * 1001), timeout=5)
    assert _violation(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, ["requests"])


def test_empty_batch(client: AuthzClient) -> None:
    assert client.check_batch([]) == []


def test_migrate_without_an_organization_is_invalid(stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    """Migrate is implemented (tests/e2e/test_migrate.py); an empty request names the field."""
    with pytest.raises(grpc.RpcError) as info:
        stub.Migrate(pb.MigrateRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
