"""Per product and per state, against a real server on the example organization acme-eu."""

from __future__ import annotations

import grpc
import pytest

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

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
