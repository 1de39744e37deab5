"""ListFilter over gRPC against a real server: the returned SQL, run on a real table
(SQLite, and PostgreSQL when reachable), selects exactly the records that per-record
Checks (CheckBatch, same server) allow. Subscription reports and dashboards first."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from authz.engine.listfilter import matches
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

STATUSES = ["", "draft", "pending_approval", "rejected", "approved", "sent", "paid"]
CUSTOMERS = ["c-1001", "c-1002", "c-2001", ""]  # c-100x: Stella's assigned customers
OWNERS = ["u-sam", "u-quinn", "u-stella", "u-paul", "u-fiona", "u-bea", "u-anna"]
USERS = ["u-sam", "u-bea", "u-anna", "u-stella", "u-fiona", "u-ivy", "u-noah", "u-olga",
         "u-quinn", "u-lena"]
# (module, action): subscription reports and dashboards first, then record lists.
CASES = [("reports", "view"), ("reports", "export"), ("dashboard", "view"),
         ("subscriptions", "view"), ("subscriptions", "edit"), ("invoices", "view"),
         ("invoices", "approve"), ("estimates", "email"), ("invoices", "record_payment")]
COLUMNS = {"owner": "owner_id"}  # the report table names one attribute differently
DDL = ("CREATE TABLE records (id INTEGER PRIMARY KEY, owner_id TEXT NOT NULL, "
       "customer_id TEXT NOT NULL, "
       "status TEXT NOT NULL, location TEXT NOT NULL, total DOUBLE PRECISION, "
       "approval_level INTEGER NOT NULL, created_by TEXT NOT NULL)")


def make_records(n: int = 150, seed: int = 11) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{"id": i, "owner": rnd.choice(OWNERS), "customer_id": rnd.choice(CUSTOMERS),
             "status": rnd.choice(STATUSES),
             "location": rnd.choice(["berlin", "munich", ""]),
             "total": rnd.choice([None, 0.0, 999.99, 1000.0, 10000.0, 25000.0]),
             "approval_level": rnd.choice([0, 1, 2]), "created_by": rnd.choice(OWNERS)}
            for i in range(n)]


RECORDS = make_records()


def allowed_by_checks(stub: authz_pb2_grpc.AuthzServiceStub, user: str, module: str,
                      action: str) -> set[int]:
    reqs = []
    for r in RECORDS:
        rec = pb.Record(owner=r["owner"], customer_id=r["customer_id"], status=r["status"],
                        location=r["location"],
                        approval_level=r["approval_level"], created_by=r["created_by"])
        if r["total"] is not None:
            rec.total.value = r["total"]
        reqs.append(pb.CheckRequest(org_id="acme-eu", user=user, module=module, action=action,
                                    record=rec))
    resp = stub.CheckBatch(pb.CheckBatchRequest(requests=reqs), timeout=10)
    out = set()
    for r, res in zip(RECORDS, resp.results, strict=True):
        if res.WhichOneof("result") == "error":  # a rule reads the total (or, with several
            # levels, the approval level) this record lacks: never allowed
            assert res.error.message.startswith(tuple(
                f"requests[{r['id']}].record.{f}: " for f in ("total", "approval_level"))), res
            continue
        if res.response.decision == pb.DECISION_ALLOW:
            out.add(r["id"])
    return out


def params(resp: pb.ListFilterResponse) -> list[Any]:
    return [json_format.MessageToDict(v) for v in resp.sql_params]


def ask(stub: authz_pb2_grpc.AuthzServiceStub, user: str, module: str, action: str,
        placeholder: pb.SqlPlaceholder.ValueType) -> pb.ListFilterResponse:
    return stub.ListFilter(pb.ListFilterRequest(  # type: ignore[no-any-return]
        org_id="acme-eu", user=user, module=module, action=action, sql_placeholder=placeholder,
        sql_columns=COLUMNS), timeout=5)


@pytest.fixture(scope="module")
def sqlite_table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(DDL)
    db.executemany("INSERT INTO records VALUES (:id, :owner, :customer_id, :status, :location, :total, "
                   ":approval_level, :created_by)", RECORDS)
    return db


@pytest.mark.parametrize(("module", "action"), CASES)
def test_sqlite_filter_equals_per_record_checks(
    stub: authz_pb2_grpc.AuthzServiceStub, sqlite_table: sqlite3.Connection, module: str,
    action: str,
) -> None:
    scopes = set()
    for user in USERS:
        resp = ask(stub, user, module, action, pb.SQL_PLACEHOLDER_QMARK)
        scopes.add(resp.scope)
        sql = f"SELECT id FROM records WHERE {resp.sql_where}"
        selected = {row[0] for row in sqlite_table.execute(sql, params(resp))}
        expected = allowed_by_checks(stub, user, module, action)
        assert selected == expected, (user, module, action, resp.sql_where)
        tree = json_format.MessageToDict(resp.filter)
        for r in RECORDS:  # the tree itself, evaluated by the reference evaluator
            assert matches(tree, r) == (r["id"] in expected), (user, r, tree)
        assert resp.policy_revision and resp.directory_revision >= 1
    assert pb.FILTER_SCOPE_NONE in scopes  # u-noah, u-olga: nothing at all


def test_subscription_reports_follow_the_users_subscriptions_role(
    stub: authz_pb2_grpc.AuthzServiceStub,
) -> None:
    def scope(user: str, module: str, action: str) -> int:
        return ask(stub, user, module, action, pb.SQL_PLACEHOLDER_QMARK).scope

    # Sam's Books role (sales rep) has no reports; his Subscriptions role (subscription
    # sales) views them: the union of his products' roles applies in the CRM.
    assert scope("u-sam", "reports", "view") == pb.FILTER_SCOPE_ALL
    assert scope("u-sam", "reports", "export") == pb.FILTER_SCOPE_NONE
    assert scope("u-sam", "dashboard", "view") == pb.FILTER_SCOPE_ALL
    # Bea is only a Subscriptions billing viewer: subscriptions yes, reports and dashboards no.
    assert scope("u-bea", "subscriptions", "view") == pb.FILTER_SCOPE_ALL
    assert scope("u-bea", "reports", "view") == pb.FILTER_SCOPE_NONE
    assert scope("u-bea", "dashboard", "view") == pb.FILTER_SCOPE_NONE
    # Not migrated: nothing, whatever the module.
    assert scope("u-noah", "dashboard", "view") == pb.FILTER_SCOPE_NONE


def test_placeholder_styles(stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    q = ask(stub, "u-stella", "invoices", "view", pb.SQL_PLACEHOLDER_QMARK)
    d = ask(stub, "u-stella", "invoices", "view", pb.SQL_PLACEHOLDER_DOLLAR)
    p = ask(stub, "u-stella", "invoices", "view", pb.SQL_PLACEHOLDER_PERCENT)
    assert "owner_id" in q.sql_where and "?" in q.sql_where
    assert "$1" in d.sql_where and "?" not in d.sql_where
    assert "%s" in p.sql_where and "?" not in p.sql_where
    assert params(q) == params(d) == params(p)


@pytest.mark.parametrize(("field", "request_kw"), [
    ("module", {"module": "bananas"}),
    ("action", {"action": "fly"}),
    ("user", {"user": ""}),
    ("sql_columns[owner]", {"sql_columns": {"owner": "owner; DROP TABLE x"}}),
    ("sql_columns[colour]", {"sql_columns": {"colour": "c"}}),
])
def test_bad_requests_name_the_field(stub: authz_pb2_grpc.AuthzServiceStub, field: str,
                                     request_kw: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"org_id": "acme-eu", "user": "u-sam", "module": "invoices",
                          "action": "view"} | request_kw
    with pytest.raises(grpc.RpcError) as err:
        stub.ListFilter(pb.ListFilterRequest(**kw), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or ""), err.value.details()


def test_unknown_organization(stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.ListFilter(pb.ListFilterRequest(org_id="nope", user="u-sam", module="invoices",
                                             action="view"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.postgres
def test_postgres_filter_equals_per_record_checks(
    stub: authz_pb2_grpc.AuthzServiceStub, postgres_url: str,
) -> None:
    import psycopg

    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute(DDL)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO records VALUES (%(id)s, %(owner)s, %(customer_id)s, %(status)s, "
                            "%(location)s, %(total)s, %(approval_level)s, %(created_by)s)",
                            RECORDS)
        for module, action in CASES:
            for user in USERS:
                resp = ask(stub, user, module, action, pb.SQL_PLACEHOLDER_PERCENT)
                rows = conn.execute(f"SELECT id FROM records WHERE {resp.sql_where}",
                                    params(resp)).fetchall()
                expected = allowed_by_checks(stub, user, module, action)
                assert {r[0] for r in rows} == expected, (user, module, action, resp.sql_where)
