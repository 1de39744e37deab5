"""Per product and per state, against a real server on the example organization acme-eu."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from authz import catalog
from authz.directory_file import read
from authz.engine.listfilter import matches
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import REPO

ORG = "acme-eu"


def test_a_viewed_invoice_is_accepted_and_past_approval(
        stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    r = stub.Check(pb.CheckRequest(org_id=ORG, user="u-fiona", action="email", module="invoices",
                                   product="books",
                                   record=pb.Record(status="viewed", total={"value": 20000})),
                   timeout=5)
    assert r.decision == pb.DECISION_ALLOW, r.message
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(pb.CheckRequest(org_id=ORG, user="u-fiona", action="email", module="invoices",
                                   record=pb.Record(status="lost")), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'lost'" in (err.value.details() or "")


def _audit(stub: authz_pb2_grpc.AuthzServiceStub, decision_id: str) -> pb.AuditEntry:
    """The trail's entry for an id (batched mode: it may take a flush to arrive)."""
    deadline = time.monotonic() + 10
    while True:
        found = stub.QueryAudit(pb.QueryAuditRequest(org_id=ORG, decision_id=decision_id),
                                timeout=5).entries
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"{decision_id} never reached the trail"
        time.sleep(0.1)


def test_a_subscriptions_attribute_acts_as_the_subscriptions_user(
        stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    a = stub.Attribute(pb.AttributeRequest(org_id=ORG, user="u-sam", action="view",
                                           module="invoices", product="subscriptions"), timeout=5)
    assert (a.act_as, a.product, a.identity.subscriptions_user_id) == ("s-sam", "subscriptions", "s-sam")
    assert a.identity.books_user_id == "" and a.mode == pb.MODE_UNIFIED
    e = _audit(stub, a.attribution_id)
    assert (e.acting_kind, e.acting_id) == ("finance_user:subscriptions", "s-sam")
    # Following a Subscriptions Check, the product comes from the decision it cites.
    d = stub.Check(pb.CheckRequest(org_id=ORG, user="u-sam", action="view", module="invoices",
                                   product="subscriptions"), timeout=5)
    assert d.decision == pb.DECISION_ALLOW and d.product == "subscriptions"
    assert (_audit(stub, d.decision_id).acting_kind, _audit(stub, d.decision_id).acting_id) == (
        "finance_user:subscriptions", "s-sam")
    cited = stub.Attribute(pb.AttributeRequest(org_id=ORG, user="u-sam", action="view",
                                               module="invoices", decision_id=d.decision_id),
                           timeout=5)
    assert cited.act_as == "s-sam" and cited.product == "subscriptions"
    with pytest.raises(grpc.RpcError) as ambiguous:  # both products have invoices, Sam is in both
        stub.Attribute(pb.AttributeRequest(org_id=ORG, user="u-sam", action="view",
                                           module="invoices"), timeout=5)
    assert ambiguous.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "product" in (ambiguous.value.details() or "")
    with pytest.raises(grpc.RpcError) as none:  # Fiona has no Subscriptions user: never her Books one
        stub.Attribute(pb.AttributeRequest(org_id=ORG, user="u-fiona", action="view",
                                           module="invoices", product="subscriptions"), timeout=5)
    assert none.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_personal_data_of_customers_stays_hidden_through_subscriptions(
        stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    r = stub.Check(pb.CheckRequest(org_id=ORG, user="u-sam", action="view", module="customers",
                                   product="subscriptions", read_fields=["tax_id", "credit_limit"]),
                   timeout=5)
    assert r.decision == pb.DECISION_ALLOW and "tax_id" in r.hidden_fields


# Records a report engine may hold: owned or not, each state before and after approval,
# totals across the approval rules, levels, creators, locations, assigned customers.
def _records(user: str) -> list[dict[str, Any]]:
    # Unknown strings are "" rather than NULL, as the filter's contract asks of tables.
    out: list[dict[str, Any]] = [{"owner": "", "status": "", "approval_level": 0, "created_by": "",
                                  "location": "", "customer_id": ""}]
    for owner, status, total, level, creator, location, customer in [
        (user, "draft", 500.0, 0, user, "", ""),
        (user, "approved", 20000.0, 1, user, "berlin", "c-1001"),
        ("u-other", "pending_approval", 20000.0, 1, "u-other", "", "c-9"),
        ("u-other", "pending_approval", 20000.0, 2, "u-other", "berlin", ""),
        ("u-other", "viewed", 50.0, 0, "u-other", "munich", "c-1002"),
        (user, "pending_approval", 5000.0, 1, user, "", ""),
        ("u-other", "sent", 1500.0, 0, "u-other", "berlin", "c-1001"),
        ("u-other", "rejected", None, 0, "", "", ""),
    ]:
        rec = {"owner": owner, "status": status, "approval_level": level,
               "created_by": creator, "location": location, "customer_id": customer}
        if total is not None:
            rec["total"] = total
        out.append(rec)
    return out


def test_list_filter_is_never_wider_than_check_for_the_same_product(
        stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    """Property over the example organization: every user, module, product (and none),
    the common actions; a record the filter lets through is one Check allows."""
    snap = read(REPO / "authz/policies/orgs/acme-eu/tests/directory.yaml").snapshot()
    asked: list[tuple[pb.CheckRequest, str]] = []
    for user, module in itertools.product(sorted(snap.crm_users), sorted(catalog.ALL_MODULES)):
        for product in ("", *catalog.products_with(module)):
            for action in ("view", "create", "edit", "approve", "email", "export"):
                if action not in catalog.actions_for(module):
                    continue
                lf = stub.ListFilter(pb.ListFilterRequest(org_id=ORG, user=user, module=module,
                                                          action=action, product=product), timeout=5)
                tree = json_format.MessageToDict(lf.filter)
                for rec in _records(user):
                    if matches(tree, rec):
                        record = pb.Record(**{k: v for k, v in rec.items() if k != "total"})
                        if "total" in rec:
                            record.total.value = rec["total"]
                        asked.append((pb.CheckRequest(org_id=ORG, user=user, action=action,
                                                      module=module, product=product,
                                                      record=record), json.dumps(rec)))
    assert len(asked) > 1000
    wider = []
    for i in range(0, len(asked), 1000):
        chunk = asked[i:i + 1000]
        answers = stub.CheckBatch(pb.CheckBatchRequest(requests=[q for q, _ in chunk]), timeout=30)
        for (q, rec), r in zip(chunk, answers.results, strict=True):
            if not r.HasField("response") or r.response.decision != pb.DECISION_ALLOW:
                wider.append(f"{q.user} {q.action} {q.product or '-'}/{q.module} {rec}: "
                             f"{r.response.message if r.HasField('response') else r.error.message}")
    assert not wider, f"{len(wider)} records let through that Check denies, e.g. {wider[:5]}"


def test_no_subscriptions_role_means_no_subscriptions_report(
        stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    lf = stub.ListFilter(pb.ListFilterRequest(org_id=ORG, user="u-fiona", module="reports",
                                              action="view", product="subscriptions"), timeout=5)
    assert lf.scope == pb.FILTER_SCOPE_NONE and lf.sql_where == "1=0"
    books = stub.ListFilter(pb.ListFilterRequest(org_id=ORG, user="u-fiona", module="reports",
                                                 action="view", product="books"), timeout=5)
    assert books.scope == pb.FILTER_SCOPE_ALL
    with pytest.raises(grpc.RpcError) as err:
        stub.ListFilter(pb.ListFilterRequest(org_id=ORG, user="u-fiona", module="plans",
                                             action="view", product="books"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
