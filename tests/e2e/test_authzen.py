"""The AuthZEN 1.0 HTTP API against a real `authz serve`, called with a real HTTP client
(the standard library's), and compared with gRPC Check on the same questions."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from authz_server.process.config import Config, ConfigError
from authz_server.process.workers import worker_configs
from tests.e2e.serverproc import ServerProc, start_server

ORG = "acme-eu"
USERS = ["u-anna", "u-sam", "u-quinn", "u-fiona", "u-stella", "u-tim", "u-paul", "u-lena",
         "u-ivy", "u-noah", "u-olga", "u-ian", "u-bea", "sam@ACME.example", "nobody"]
MODULES = ["invoices", "estimates", "sales_orders", "purchase_orders", "customers",
           "subscriptions", "reports", "plans"]
ACTIONS = ["view", "create", "edit", "delete", "approve", "final_approve", "email",
           "mark_as_sent", "record_payment", "export", "view_protected_data"]
STATUSES = ["", "draft", "pending_approval", "approved", "sent", "paid"]


def call(server: ServerProc, path: str, body: Any = None, headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, dict[str, str], Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(server.http_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def subject(user: str = "u-sam", org: str = ORG) -> dict[str, Any]:
    return {"type": "user", "id": user, "properties": {"org_id": org}}


def question(rng: random.Random) -> tuple[dict[str, Any], pb.CheckRequest]:
    """A random question about the example org, as AuthZEN JSON and as a CheckRequest."""
    user, module, action = rng.choice(USERS), rng.choice(MODULES), rng.choice(ACTIONS)
    props: dict[str, Any] = {}
    if rng.random() < 0.7:
        props["status"] = rng.choice(STATUSES)
    if rng.random() < 0.6:
        props["total"] = rng.choice([0, 500, 9999.5, 20000, 150000])
    if rng.random() < 0.4:
        props["owner"] = rng.choice(["u-stella", "u-sam", "u-paul"])
    if rng.random() < 0.3:
        props["customer_id"] = rng.choice(["c-1001", "c-2001"])
    if rng.random() < 0.3:
        props["approval_level"] = rng.choice([0, 1, 2])
    if rng.random() < 0.3:
        props["created_by"] = rng.choice(["u-fiona", "u-sam"])
    if rng.random() < 0.2:
        props["location"] = rng.choice(["berlin", "paris"])
    writes = rng.sample(["discount", "payment_terms", "internal_notes", "notes"], rng.randint(0, 2))
    body = {"subject": subject(user), "action": {"name": action},
            "resource": {"type": module, "id": f"r-{rng.randint(1, 99)}", "properties": props}}
    if writes:
        body["action"]["properties"] = {"write_fields": writes}
    req = pb.CheckRequest(org_id=ORG, user=user, action=action, module=module,
                          write_fields=writes)
    req.record.record_id = body["resource"]["id"]
    for k, v in props.items():
        if k == "total":
            req.record.total.value = v
        else:
            setattr(req.record, k, v)
    return body, req


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """A decision's content, without what differs between two calls (id, time)."""
    return {k: v for k, v in answer.items() if k not in ("decision_id", "decided_at")}


def grpc_answer(stub: authz_pb2_grpc.AuthzServiceStub, req: pb.CheckRequest) -> dict[str, Any]:
    """Check's answer as JSON, or the gRPC error's code and first field violation."""
    try:
        return comparable(json_format.MessageToDict(stub.Check(req, timeout=10),
                                                    preserving_proto_field_name=True))
    except grpc.RpcError as err:
        return {"error": err.code().name, **_violation(err)}


def _violation(err: grpc.RpcError) -> dict[str, str]:
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for d in status.details:
                bad = error_details_pb2.BadRequest()
                if d.Unpack(bad):
                    return {"description": bad.field_violations[0].description}
    return {}


def http_answer(one: dict[str, Any]) -> dict[str, Any]:
    if "error" in one.get("context", {}):
        return {"error": one["context"]["error"]}
    assert one["decision"] is (one["context"]["authz"]["decision"] == "DECISION_ALLOW")
    return comparable(one["context"]["authz"])


def test_discovery_names_the_endpoints_it_serves(server: ServerProc) -> None:
    status, headers, meta = call(server, "/.well-known/authzen-configuration", method="GET")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert meta["policy_decision_point"] == server.http_url.replace("127.0.0.1", "127.0.0.1")
    assert meta["access_evaluation_endpoint"] == server.http_url + "/access/v1/evaluation"
    assert meta["access_evaluations_endpoint"] == server.http_url + "/access/v1/evaluations"
    assert meta["search_resource_endpoint"] == server.http_url + "/access/v1/search/resource"
    # Not served, so not advertised (AuthZEN: absent means not supported).
    assert "search_subject_endpoint" not in meta and "search_action_endpoint" not in meta
    status, _, _ = call(server, "/access/v1/search/subject", {})
    assert status == 404


def test_evaluation_answers_as_check_does(server: ServerProc,
                                         stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    """A sample of questions over the example org: the same decision, reason, identity,
    fields, approval obligation and revisions as Check, or the same refusal."""
    rng = random.Random(14)
    allowed = denied = refused = 0
    for _ in range(120):
        body, req = question(rng)
        status, _, answer = call(server, "/access/v1/evaluation", body)
        expected = grpc_answer(stub, req)
        if "error" in expected:
            assert status == 400 and expected["error"] == "INVALID_ARGUMENT", (body, answer)
            violation = answer["error"]["field_violations"][0]
            assert violation["description"] == expected["description"], (body, answer)
            refused += 1
            continue
        assert status == 200, answer
        assert http_answer(answer) == expected, body
        allowed += answer["decision"]
        denied += not answer["decision"]
    assert allowed > 10 and denied > 10 and refused > 0  # the sample exercises all three


def test_evaluations_execute_all_answers_each_as_check(
        server: ServerProc, stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    rng = random.Random(41)
    pairs = [question(rng) for _ in range(60)]
    status, _, answer = call(server, "/access/v1/evaluations",
                             {"evaluations": [b for b, _ in pairs]})
    assert status == 200 and len(answer["evaluations"]) == len(pairs)
    for i, ((body, req), one) in enumerate(zip(pairs, answer["evaluations"], strict=True)):
        expected = grpc_answer(stub, req)
        if "error" in expected:
            assert one["decision"] is False and one["context"]["error"]["status"] == 400
            assert one["context"]["error"]["field"].startswith(f"evaluations[{i}].")
        else:
            assert http_answer(one) == expected, body


def test_evaluations_defaults_and_overrides(server: ServerProc) -> None:
    status, _, answer = call(server, "/access/v1/evaluations", {
        "subject": subject("u-sam"), "action": {"name": "view"},
        "resource": {"type": "invoices", "id": "inv-1"},
        "evaluations": [{}, {"subject": subject("u-noah")},
                        {"action": {"name": "delete"}}, {"resource": {"type": "bananas", "id": "x"}}]})
    assert status == 200
    reasons = [e["context"].get("reason") for e in answer["evaluations"]]
    assert reasons[:3] == ["granted", "not_migrated", "action_not_granted"]
    assert answer["evaluations"][3]["context"]["error"]["field"] == "evaluations[3].resource.type"


@pytest.mark.parametrize(("semantic", "expected"), [
    ("execute_all", [True, False, True]),
    ("deny_on_first_deny", [True, False]),
    ("permit_on_first_permit", [True]),
])
def test_evaluations_semantics(server: ServerProc, semantic: str, expected: list[bool]) -> None:
    status, _, answer = call(server, "/access/v1/evaluations", {
        "subject": subject("u-sam"),
        # with its total: an edit whose approval rule reads it is refused without one
        "resource": {"type": "invoices", "id": "inv-1", "properties": {"total": 500}},
        "options": {"evaluations_semantic": semantic},
        "evaluations": [{"action": {"name": "view"}}, {"action": {"name": "delete"}},
                        {"action": {"name": "edit"}}]})
    assert status == 200
    assert [e["decision"] for e in answer["evaluations"]] == expected


def test_short_circuit_stops_deciding_and_recording(
        server: ServerProc, stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    """Items after the deciding one are neither answered nor written to the audit trail."""
    record = f"sc-{time.monotonic_ns()}"
    status, _, answer = call(server, "/access/v1/evaluations", {
        "subject": subject("u-noah"), "action": {"name": "view"},
        "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": [{"resource": {"type": "invoices", "id": record}}] * 3})
    assert status == 200 and [e["decision"] for e in answer["evaluations"]] == [False]
    entries = audit(stub, record_id=record)
    assert len(entries) == 1 and entries[0].decision_id == answer["evaluations"][0]["context"]["id"]


def audit(stub: authz_pb2_grpc.AuthzServiceStub, **query: str) -> list[pb.AuditEntry]:
    """The audit entries the query names, once the batched writer has flushed them."""
    deadline = time.monotonic() + 10
    while True:
        entries = list(stub.QueryAudit(pb.QueryAuditRequest(org_id=ORG, **query),
                                       timeout=10).entries)
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def test_evaluation_is_audited_with_the_calling_service(
        server: ServerProc, stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    status, _, answer = call(server, "/access/v1/evaluation", {
        "subject": subject("u-fiona"), "action": {"name": "create"},
        "resource": {"type": "invoices", "id": "inv-audit", "properties": {"total": 20000}}},
        headers={"X-Authz-Caller": "api-gateway"})
    assert status == 200 and answer["decision"] is True
    entries = audit(stub, decision_id=answer["context"]["id"])
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.crm_user, entry.action, entry.module, entry.record_id, entry.allowed,
            entry.caller) == ("u-fiona", "create", "invoices", "inv-audit", True, "api-gateway")


def test_evaluation_and_check_write_the_same_audit_entry(
        server: ServerProc, stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    """One question through each door: the two entries differ only in id, time, chain
    position and calling service."""
    record = f"same-{time.monotonic_ns()}"
    body = {"subject": subject("u-ivy"), "action": {"name": "edit"},
            "resource": {"type": "estimates", "id": record, "properties": {"status": "draft"}}}
    req = pb.CheckRequest(org_id=ORG, user="u-ivy", action="edit", module="estimates")
    req.record.record_id, req.record.status = record, "draft"
    _, _, answer = call(server, "/access/v1/evaluation", body)
    via_grpc = stub.Check(req, timeout=10)
    deadline = time.monotonic() + 10
    while len(entries := audit(stub, record_id=record)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    by_id = {e.decision_id: e for e in entries}
    http_entry, grpc_entry = by_id[answer["context"]["id"]], by_id[via_grpc.decision_id]
    skip = {"seq", "at", "decision_id", "prev_hash", "hash", "caller"}
    fields = [f.name for f in pb.AuditEntry.DESCRIPTOR.fields if f.name not in skip]
    assert {f: getattr(http_entry, f) for f in fields} == {f: getattr(grpc_entry, f) for f in fields}
    assert http_entry.allowed is True and http_entry.acting_id == "iu-ivy"


@pytest.mark.parametrize(("body", "field"), [
    ({"subject": subject(), "action": {"name": "view"}, "resource": {"type": "bananas", "id": "1"}},
     "resource.type"),
    ({"subject": subject(""), "action": {"name": "view"}, "resource": {"type": "invoices", "id": "1"}},
     "subject.id"),
    ({"subject": subject("u-sam", ""), "action": {"name": "view"},
      "resource": {"type": "invoices", "id": "1"}}, "subject.properties.org_id"),
    ({"subject": {"type": "group", "id": "g", "properties": {"org_id": ORG}},
      "action": {"name": "view"}, "resource": {"type": "invoices", "id": "1"}}, "subject.type"),
    ({"subject": subject(), "action": {"name": "fly"}, "resource": {"type": "invoices", "id": "1"}},
     "action.name"),
    ({"subject": subject(), "action": {"name": "view"},
      "resource": {"type": "invoices", "id": "1", "properties": {"total": "lots"}}},
     "resource.properties.total"),
    ({"subject": subject(), "action": {"name": "view"},
      "resource": {"type": "invoices", "id": "1", "properties": {"status": "lost"}}},
     "resource.properties.status"),
    ({"subject": subject(), "action": {"name": "view"},
      "resource": {"type": "invoices", "id": "a\u0000b"}}, "resource.id"),
    ({"subject": subject("x" * 300), "action": {"name": "view"},
      "resource": {"type": "invoices", "id": "1"}}, "subject.id"),
    ({"subject": subject(), "action": {"name": "edit", "properties": {"write_field": ["a"]}},
      "resource": {"type": "invoices", "id": "1"}}, "action.properties.write_field"),
    ({"subject": subject(), "action": {"name": "edit", "properties": {"write_fields": ["a b"]}},
      "resource": {"type": "invoices", "id": "1"}}, "action.properties.write_fields"),
    ({"subject": subject(), "action": {"name": "view"}, "resource": {"type": "invoices", "id": "1"},
      "context": {"chanel": "direct"}}, "context.chanel"),
    ({"subject": subject(), "action": {"name": "view"}}, "resource"),
])
def test_bad_requests_are_400_naming_the_field(server: ServerProc, body: dict[str, Any],
                                               field: str) -> None:
    status, headers, answer = call(server, "/access/v1/evaluation", body,
                                   headers={"X-Request-ID": "req-400"})
    assert status == 400, answer
    assert answer["error"]["field_violations"][0]["field"] == field
    assert answer["error"]["message"].startswith(field + ": ")
    assert headers["X-Request-ID"] == "req-400"


def test_malformed_json_and_unknown_org(server: ServerProc) -> None:
    status, _, answer = call(server, "/access/v1/evaluation", b"{\"subject\": ")
    assert status == 400 and answer["error"]["field_violations"][0]["field"] == "request"
    status, _, answer = call(server, "/access/v1/evaluation", b"[" * 100_000)
    assert status == 400 and "nested" in answer["error"]["message"]
    status, _, answer = call(server, "/access/v1/evaluation", {
        "subject": subject("u-sam", "no-such-org"), "action": {"name": "view"},
        "resource": {"type": "invoices", "id": "1"}})
    assert status == 404 and answer["error"]["code"] == "NOT_FOUND"


def test_request_id_is_echoed_and_batch_limit_holds(server: ServerProc) -> None:
    status, headers, _ = call(server, "/access/v1/evaluation", {
        "subject": subject(), "action": {"name": "view"},
        "resource": {"type": "invoices", "id": "1"}}, headers={"X-Request-ID": "bfe9eb29"})
    assert status == 200 and headers["X-Request-ID"] == "bfe9eb29"
    status, _, answer = call(server, "/access/v1/evaluations", {
        "subject": subject(), "action": {"name": "view"},
        "evaluations": [{"resource": {"type": "invoices", "id": "1"}}] * 1001})
    assert status == 400 and answer["error"]["field_violations"][0]["field"] == "evaluations"
    status, _, answer = call(server, "/access/v1/evaluations", {
        "evaluations": [], "options": {"evaluations_semantic": "first_one_wins"}})
    assert status == 400
    assert answer["error"]["field_violations"][0]["field"] == "options.evaluations_semantic"


def candidates(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        props: dict[str, Any] = {"owner": rng.choice(["u-stella", "u-sam", "u-paul", ""]),
                                 "status": rng.choice(STATUSES)}
        if rng.random() < 0.5:
            props["customer_id"] = rng.choice(["c-1001", "c-1002", "c-2001"])
        if rng.random() < 0.7:
            props["total"] = rng.choice([100, 9999, 10000, 50000])
        if rng.random() < 0.5:
            props["location"] = rng.choice(["berlin", "paris", ""])
        if rng.random() < 0.4:
            props["approval_level"] = rng.choice([1, 2])
        if rng.random() < 0.4:
            props["created_by"] = rng.choice(["u-fiona", "u-lena"])
        out.append({"id": f"rec-{i}", "properties": props})
    return out


@pytest.mark.parametrize(("user", "action"), [
    ("u-stella", "view"), ("u-lena", "edit"), ("u-fiona", "approve"), ("u-sam", "email"),
    ("u-noah", "view"), ("u-anna", "delete"), ("u-ivy", "edit"),
])
def test_resource_search_returns_exactly_what_evaluation_allows(
        server: ServerProc, user: str, action: str) -> None:
    rng = random.Random(f"{user}/{action}")
    pool = candidates(rng, 40)
    status, _, found = call(server, "/access/v1/search/resource", {
        "subject": subject(user), "action": {"name": action}, "resource": {"type": "invoices"},
        "context": {"candidates": pool}, "page": {"limit": 1000}})
    assert status == 200, found
    status, _, each = call(server, "/access/v1/evaluations", {
        "subject": subject(user), "action": {"name": action},
        "evaluations": [{"resource": {"type": "invoices", **c}} for c in pool]})
    assert status == 200
    allowed = [c["id"] for c, e in zip(pool, each["evaluations"], strict=True) if e["decision"]]
    assert [r["id"] for r in found["results"]] == allowed
    assert all(r["type"] == "invoices" for r in found["results"])
    assert found["page"] == {"next_token": "", "count": len(allowed), "total": len(allowed)}
    assert found["context"]["scope"] in ("all", "some", "none")


def test_resource_search_pages_and_filter(server: ServerProc) -> None:
    pool = [{"id": f"p-{i}", "properties": {"owner": "u-stella" if i % 2 else "u-sam"}}
            for i in range(7)]
    ask = {"subject": subject("u-stella"), "action": {"name": "view"},
           "resource": {"type": "invoices"}, "context": {"candidates": pool}}
    ids, token, pages = [], "", 0
    while True:
        status, _, found = call(server, "/access/v1/search/resource",
                                {**ask, "page": {"limit": 2, "token": token}})
        assert status == 200, found
        ids += [r["id"] for r in found["results"]]
        token, pages = found["page"]["next_token"], pages + 1
        if not token:
            break
    assert ids == ["p-1", "p-3", "p-5"] and pages == 2
    status, _, found = call(server, "/access/v1/search/resource",
                            {k: v for k, v in ask.items() if k != "context"})
    assert status == 200 and found["results"] == []
    assert found["context"]["scope"] == "some" and "owner = ?" in found["context"]["sql_where"]
    assert "u-stella" in found["context"]["sql_params"]
    status, _, found = call(server, "/access/v1/search/resource", {
        **ask, "resource": {"type": "invoices", "properties": {"product": "bogus"}}})
    assert status == 400
    assert found["error"]["field_violations"][0]["field"] == "resource.properties.product"
    status, _, found = call(server, "/access/v1/search/resource", {
        **ask, "context": {"candidates": [{"id": "x", "properties": {"totl": 1}}]}})
    assert status == 400
    assert found["error"]["field_violations"][0]["field"] == "context.candidates[0].properties.totl"


def test_workers_share_the_http_port(tmp_path: Path, db_url: str) -> None:
    """`--workers 2`: both processes listen on the one AuthZEN port (SO_REUSEPORT)."""
    with pytest.raises(ConfigError, match="fixed port in http_listen"):
        worker_configs(Config(listen="127.0.0.1:50999", http_listen="127.0.0.1:0", workers=2))
    proc = start_server(tmp_path, db_url, "--workers", "2", http=True)
    try:
        deadline = time.monotonic() + 30  # both workers ready (a starting one answers 503)
        while proc.log().count('"event": "serving"') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(10):
            status, _, answer = call(proc, "/access/v1/evaluation", {
                "subject": subject(), "action": {"name": "view"},
                "resource": {"type": "invoices", "id": "1"}})
            assert status == 200 and answer["decision"] is True
        assert proc.log().count('"event": "authzen_listening"') == 2
    finally:
        assert proc.stop() == 0, proc.log()
