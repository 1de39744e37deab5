"""List filters run as SQL on a real table select exactly the records that per-record
Checks allow."""

from __future__ import annotations

import itertools
import random
import sqlite3
from pathlib import Path

import pytest

from authz import catalog
from authz.decision import CheckRequest, Record
from authz.directory_file import read
from authz.engine import PolicySet
from authz.engine.decide import decide
from authz.engine.listfilter import FALSE, TRUE, matches, record_filter, to_sql
from authz.errors import InvalidArgument

DIRECTORY = Path(__file__).resolve().parents[2] / "authz/policies/orgs/acme-eu/tests/directory.yaml"
STATUSES = ["", "draft", "pending_approval", "rejected", "approved", "sent", "paid"]
OWNERS = ["u-sam", "u-quinn", "u-stella", "u-paul", "u-fiona", "u-noah"]
LOCATIONS = ["berlin", "munich", ""]
CUSTOMERS = ["c-1001", "c-1002", "c-2001", ""]  # Stella's assigned customers and others
# Creators by any identity: self-approval must see Books / Subscriptions ids and e-mails.
CREATORS = [*OWNERS, "b-fiona", "FIONA@acme.example", "s-anna", "Anna@Acme.example", ""]
TOTALS = [0.0, 500.0, 999.99, 1000.0, 5000.0, 10000.0, 25000.0, None]  # None: not known


def make_records(n: int, seed: int = 7) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    return [{"id": i, "owner": rnd.choice(OWNERS), "customer_id": rnd.choice(CUSTOMERS),
             "status": rnd.choice(STATUSES),
             "location": rnd.choice(LOCATIONS), "total": rnd.choice(TOTALS),
             "approval_level": rnd.choice([0, 1, 2, 3]), "created_by": rnd.choice(CREATORS)}
            for i in range(n)]


@pytest.fixture(scope="module")
def table() -> tuple[sqlite3.Connection, list[dict[str, object]]]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, owner TEXT, customer_id TEXT, "
               "status TEXT, location TEXT, total REAL, approval_level INTEGER, created_by TEXT)")
    records = make_records(400)
    db.executemany("INSERT INTO invoices VALUES (:id, :owner, :customer_id, :status, :location, "
                   ":total, :approval_level, :created_by)", records)
    return db, records


USERS = ["u-sam", "u-quinn", "u-stella", "u-paul", "u-fiona", "u-anna", "u-ivy", "u-lena",
         "u-noah", "u-bea", "u-tim"]
CASES = [(m, a) for m in ("invoices", "estimates", "purchase_orders", "customers")
         for a in ("view", "edit", "delete", "email", "approve", "reject", "final_approve",
                   "convert_to_invoice", "record_payment")
         if a in catalog.actions_for(m)]


@pytest.mark.parametrize(("module", "action"), CASES)
def test_sql_filter_equals_per_record_checks(
    table: tuple[sqlite3.Connection, list[dict[str, object]]], module: str, action: str
) -> None:
    db, records = table
    org = PolicySet().get("acme-eu")
    snap = read(DIRECTORY).snapshot(1)
    for user in USERS:
        f = record_filter(org, snap, user, module, action)
        where, params = to_sql(f)
        selected = {row[0] for row in db.execute(f"SELECT id FROM invoices WHERE {where}", params)}
        expected = set()
        for r in records:
            rec = Record(owner=str(r["owner"]), customer_id=str(r["customer_id"]), status=str(r["status"]),
                         location=str(r["location"]),
                         total=None if r["total"] is None else float(r["total"]),  # type: ignore[arg-type]
                         approval_level=int(r["approval_level"]),  # type: ignore[call-overload]
                         created_by=str(r["created_by"]))
            try:
                allowed = decide(CheckRequest("acme-eu", user, action, module, record=rec), org,
                                 snap).allowed
            except InvalidArgument:  # a rule reads the total the record lacks: refused
                allowed = False
            if allowed:
                expected.add(r["id"])
            assert matches(f, r) == (r["id"] in expected), (user, r)
        assert selected == expected, (user, module, action, f)


def test_filters_are_simple_where_they_can_be() -> None:
    org = PolicySet().get("acme-eu")
    snap = read(DIRECTORY).snapshot(1)
    assert record_filter(org, snap, "u-anna", "customers", "view") == TRUE
    assert record_filter(org, snap, "u-noah", "invoices", "view") == FALSE
    assert record_filter(org, snap, "u-quinn", "estimates", "view") == {
        "op": "eq", "field": "owner", "value": "u-quinn"}
    assert record_filter(org, snap, "u-lena", "bills", "view") == {
        "op": "in", "field": "location", "values": ["berlin"]}


def test_every_user_module_action_gives_a_filter() -> None:
    org = PolicySet().get("acme-eu")
    snap = read(DIRECTORY).snapshot(1)
    for user, module in itertools.product(USERS, catalog.ALL_MODULES):
        for action in catalog.actions_for(module):
            to_sql(record_filter(org, snap, user, module, action))
