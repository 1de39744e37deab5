"""Allows got by spelling a question differently (an independent attacker's pass over
the landed main), against a real server: each was answered ALLOW before.

- a field written as "Discount" or "discount.x" missed the rule for "discount";
- a creator padded with white space (" fiona@acme.example") was not Fiona, so she
  approved her own record;
- a negative total matched the "small invoice" rule and was approved automatically;
- an approval with no level in a rule of several levels was taken as level 1, so a
  level-1 approver approved a record waiting at level 2;
- a lone UTF-16 surrogate in AuthZEN JSON was a 500, not a 400 naming the request;
- another module's state ("accepted" on an invoice) counted as past approval.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.wrappers_pb2 import DoubleValue

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import ServerProc
from tests.e2e.test_authzen import call, subject

ORG = "acme-eu"


def refused(stub: authz_pb2_grpc.AuthzServiceStub, req: pb.CheckRequest) -> str:
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value.details())


@pytest.mark.parametrize("field", ["Discount", "discount.x", "INTERNAL_NOTES"])
def test_a_field_spelt_otherwise_is_refused(stub: authz_pb2_grpc.AuthzServiceStub,
                                            field: str) -> None:
    ok = pb.CheckRequest(org_id=ORG, user="u-sam", action="edit", module="invoices",
                         record=pb.Record(owner="u-sam", status="draft",
                                          total=DoubleValue(value=500)),
                         write_fields=["discount"])
    assert stub.Check(ok, timeout=10).decision == pb.DECISION_DENY  # read-only for Sam
    del ok.write_fields[:]
    ok.write_fields.append(field)
    assert "lower-case snake_case" in refused(stub, ok)


@pytest.mark.parametrize("creator", [" fiona@acme.example", "Fiona@acme.example  "])
def test_a_padded_creator_is_refused(stub: authz_pb2_grpc.AuthzServiceStub,
                                     creator: str) -> None:
    req = pb.CheckRequest(org_id=ORG, user="u-fiona", action="approve", module="invoices",
                          record=pb.Record(status="pending_approval", approval_level=1,
                                           total=DoubleValue(value=5000), created_by=creator))
    assert "white space" in refused(stub, req)


def test_a_negative_total_is_refused(stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    req = pb.CheckRequest(org_id=ORG, user="u-sam", action="create", module="invoices",
                          record=pb.Record(total=DoubleValue(value=-5_000_000)))
    assert "must not be negative" in refused(stub, req)


def test_an_approval_without_its_level_in_a_rule_of_several_is_refused(
        stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    req = pb.CheckRequest(org_id=ORG, user="u-fiona", action="approve",
                          module="purchase_orders",
                          record=pb.Record(status="pending_approval", created_by="u-sam"))
    assert "levels" in refused(stub, req)
    req.record.approval_level = 2  # named, the level decides as before: not Fiona's
    assert stub.Check(req, timeout=10).decision == pb.DECISION_DENY


def test_a_lone_surrogate_is_a_400_naming_the_request(server: ServerProc) -> None:
    body = (b'{"subject": {"type": "user", "id": "\\ud800", "properties": {"org_id": "acme-eu"}},'
            b' "action": {"name": "view"}, "resource": {"type": "invoices", "id": "1"}}')
    status, _, found = call(server, "/access/v1/evaluation", body)
    assert status == 400, found
    assert found["error"]["field_violations"][0]["field"] == "request"
    status, _, found = call(server, "/access/v1/evaluation", {  # a real pair is fine
        "subject": subject("u-sam"), "action": {"name": "view"},
        "resource": {"type": "invoices", "id": "\U0001f600"}})
    assert status == 200, found


@pytest.mark.parametrize(("status", "blocked"), [("accepted", True), ("open", True),
                                                 ("draft", True), ("sent", False)])
def test_another_modules_state_is_not_past_approval(stub: authz_pb2_grpc.AuthzServiceStub,
                                                    status: str, blocked: bool) -> None:
    """"accepted" is an estimate's state: on an invoice it says nothing of approval, so
    e-mailing the invoice stays blocked (it was allowed as if approved)."""
    req = pb.CheckRequest(org_id=ORG, user="u-sam", action="email", module="invoices",
                          record=pb.Record(owner="u-sam", status=status,
                                           total=DoubleValue(value=5000)))
    answer = stub.Check(req, timeout=10)
    assert (answer.reason == pb.REASON_BLOCKED_UNTIL_APPROVED) == blocked, answer
