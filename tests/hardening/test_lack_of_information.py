"""Decisions never allow for lack of information (DOMAIN §4, revised), against a real
server, written as a caller trying to get an allow it should not:

- a creation with no `total` in a module whose approval rule reads the total;
- approving one's own record by naming oneself with another identity (Books user id,
  Subscriptions user id, e-mail in another case);
- approving as a role that a level names but that does not grant approve, and reading
  a message that says the role granted it;
- Attribute for modules and actions that do not exist; a legacy Attribute citing a
  decision about something else.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.wrappers_pb2 import DoubleValue
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.policy.model import Level, Organization
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from tests.e2e.serverproc import seed, start_server
from tests.hardening.policyfiles import publish, variant

ORG = "acme-eu"


def _sales_rep_approves_purchase_orders(org: Organization) -> Organization:
    """Level 1 of purchase orders names the sales rep role, which grants nothing on
    purchase orders (a policy slip the reader accepts): naming is not granting."""
    approvals = []
    for a in org.approvals:
        if a.module == "purchase_orders":
            flow = a.flows[0]
            first = Level((*flow.levels[0].roles, "sales_rep"), flow.levels[0].users)
            flow = dataclasses.replace(flow, levels=(first, *flow.levels[1:]))
            a = dataclasses.replace(a, flows=(flow,))
        approvals.append(a)
    return dataclasses.replace(org, approvals=tuple(approvals))


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.AuthzServiceStub]:
    work = tmp_path_factory.mktemp("lack-of-information")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    gen = work / "generated"
    gen.mkdir()
    publish(gen, variant(_sales_rep_approves_purchase_orders))
    server = start_server(work, url, "--policy-dir", str(gen))
    try:
        with grpc.insecure_channel(server.address) as ch:
            yield pb_grpc.AuthzServiceStub(ch)
    finally:
        assert server.stop() == 0
        shutil.rmtree(gen, ignore_errors=True)


def _refused(call: object, field: str) -> str:
    """The call fails INVALID_ARGUMENT with a BadRequest naming `field`; returns the message."""
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    status = rpc_status.from_call(err.value)
    assert status is not None
    fields = []
    for d in status.details:
        bad = error_details_pb2.BadRequest()
        if d.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    assert fields == [field]
    return str(err.value.details())


def check(stub: pb_grpc.AuthzServiceStub, user: str, action: str, module: str,
          **record: object) -> pb.CheckResponse:
    total = record.pop("total", None)
    rec = pb.Record(**record)  # type: ignore[arg-type]
    if total is not None:
        rec.total.CopyFrom(DoubleValue(value=float(total)))  # type: ignore[arg-type]
    resp: pb.CheckResponse = stub.Check(pb.CheckRequest(org_id=ORG, user=user, action=action,
                                                        module=module, record=rec), timeout=5)
    return resp


# --- approval criteria that read an attribute the request lacks -----------------------

def test_a_creation_without_the_total_a_rule_reads_is_refused(
        stub: pb_grpc.AuthzServiceStub) -> None:
    message = _refused(lambda: check(stub, "u-sam", "create", "invoices"), "record.total")
    assert "large_invoice" in message and "total" in message
    # An approve of a record without its total cannot pick the level's rule either.
    _refused(lambda: check(stub, "u-fiona", "approve", "invoices", status="pending_approval",
                           approval_level=1, created_by="u-sam"), "record.total")
    # In a batch, that item alone is refused; with the total the same question is decided.
    batch = stub.CheckBatch(pb.CheckBatchRequest(requests=[
        pb.CheckRequest(org_id=ORG, user="u-sam", action="create", module="invoices"),
        pb.CheckRequest(org_id=ORG, user="u-sam", action="create", module="invoices",
                        record=pb.Record(total=DoubleValue(value=20000))),
    ]), timeout=5)
    assert batch.results[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    decided = batch.results[1].response
    assert decided.decision == pb.DECISION_ALLOW
    assert decided.approval.outcome == pb.APPROVAL_OUTCOME_PENDING_APPROVAL
    # A module whose approval reads no attribute (multi-level) needs no total.
    po = check(stub, "u-sam", "create", "estimates")
    assert po.decision == pb.DECISION_ALLOW


# --- self-approval across every identity ------------------------------------------------

@pytest.mark.parametrize("creator", ["u-fiona", "b-fiona", "FIONA@ACME.EXAMPLE",
                                     "fiona@acme.example", "B-FIONA"])
def test_an_approver_cannot_approve_their_own_record_by_another_name(
        stub: pb_grpc.AuthzServiceStub, creator: str) -> None:
    r = check(stub, "u-fiona", "approve", "invoices", status="pending_approval",
              approval_level=1, total=20000, created_by=creator)
    assert (r.decision, r.reason) == (pb.DECISION_DENY, pb.REASON_SELF_APPROVAL), r.message


def test_an_admin_cannot_final_approve_their_own_record_by_subscriptions_id(
        stub: pb_grpc.AuthzServiceStub) -> None:
    r = check(stub, "u-anna", "final_approve", "purchase_orders", status="pending_approval",
              approval_level=1, created_by="s-anna")
    assert (r.decision, r.reason) == (pb.DECISION_DENY, pb.REASON_SELF_APPROVAL), r.message


# --- approve / reject only with the grant or as a named approver ------------------------

def test_a_role_named_at_a_level_without_the_approve_grant_cannot_approve(
        stub: pb_grpc.AuthzServiceStub) -> None:
    for action in ("approve", "reject"):
        r = check(stub, "u-sam", action, "purchase_orders", status="pending_approval",
                  approval_level=1, created_by="u-paul")
        assert (r.decision, r.reason) == (pb.DECISION_DENY, pb.REASON_ACTION_NOT_GRANTED)
        assert "does not grant" in r.message and "level 1 of approval rule levels" in r.message
        assert "grants " + action not in r.message


def test_the_message_names_the_rule_and_level_that_decided(
        stub: pb_grpc.AuthzServiceStub) -> None:
    by_role = check(stub, "u-fiona", "approve", "invoices", status="pending_approval",
                    approval_level=1, total=20000, created_by="u-sam")
    assert by_role.decision == pb.DECISION_ALLOW
    assert by_role.message == ("role Finance Manager (books) grants approve on books invoices "
                               "and approves level 1 of approval rule large_invoice "
                               "(books invoices)")
    named = check(stub, "u-anna", "approve", "invoices", status="pending_approval",
                  approval_level=2, total=20000, created_by="u-sam")
    assert named.decision == pb.DECISION_ALLOW
    assert named.message == ("anna@acme.example is a named approver of level 2 of approval "
                             "rule large_invoice (books invoices)")
    other_level = check(stub, "u-fiona", "approve", "invoices", status="pending_approval",
                        approval_level=2, total=20000, created_by="u-sam")
    assert (other_level.decision, other_level.reason) == (pb.DECISION_DENY,
                                                          pb.REASON_NOT_APPROVER)


# --- Attribute -----------------------------------------------------------------------

@pytest.mark.parametrize(("module", "action", "field"), [
    ("bananas", "create", "module"),
    ("invoices", "launch_missiles", "action"),
    ("reports", "approve", "action"),
])
def test_attribute_refuses_unknown_modules_and_actions(
        stub: pb_grpc.AuthzServiceStub, module: str, action: str, field: str) -> None:
    _refused(lambda: stub.Attribute(pb.AttributeRequest(
        org_id=ORG, user="u-sam", action=action, module=module), timeout=5), field)


def test_a_legacy_attribute_still_validates_the_decision_it_cites(
        stub: pb_grpc.AuthzServiceStub) -> None:
    legacy = "globex-us"  # legacy mode: the CRM still acts as the integration owner
    viewed = stub.Check(pb.CheckRequest(org_id=legacy, user="u-gus", action="view",
                                        module="invoices"), timeout=5)
    assert viewed.mode == pb.MODE_LEGACY and viewed.decision == pb.DECISION_ALLOW
    ok = stub.Attribute(pb.AttributeRequest(org_id=legacy, user="u-gus", action="view",
                                            module="invoices", decision_id=viewed.decision_id),
                        timeout=5)
    assert ok.mode == pb.MODE_LEGACY
    # The same decision cited for a delete, for another user, from another organization.
    for attempt in (
        pb.AttributeRequest(org_id=legacy, user="u-gus", action="delete", module="invoices",
                            decision_id=viewed.decision_id),
        pb.AttributeRequest(org_id=legacy, user="u-other", action="view", module="invoices",
                            decision_id=viewed.decision_id),
    ):
        _refused(lambda a=attempt: stub.Attribute(a, timeout=5), "decision_id")
    acme = check(stub, "u-sam", "view", "invoices")
    _refused(lambda: stub.Attribute(pb.AttributeRequest(
        org_id=legacy, user="u-sam", action="view", module="invoices",
        decision_id=acme.decision_id), timeout=5), "decision_id")
