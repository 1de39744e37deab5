"""Record states (DOMAIN.md §3, revised): every real state of some module is accepted;
states past approval (sent, viewed, paid, ...) are past approval; only states no module
has are refused, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz import catalog
from authz.decision import CheckRequest, Record
from authz.directory_file import read
from authz.engine import Engine, MemoryDirectory, PolicySet
from authz.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2] / "authz" / "policies"
ORG = "acme-eu"


@pytest.fixture(scope="module")
def engine() -> Engine:
    snap = read(ROOT / "orgs" / ORG / "tests" / "directory.yaml").snapshot()
    return Engine(PolicySet(ROOT / "generated"), MemoryDirectory([snap]))


def test_the_books_lifecycles_of_the_domain_are_known() -> None:
    assert set(catalog.states_of("invoices")) >= {
        "draft", "pending_approval", "approved", "rejected", "sent", "viewed", "overdue",
        "partially_paid", "paid", "void", "written_off"}
    assert set(catalog.states_of("estimates")) >= {
        "sent", "viewed", "accepted", "declined", "expired", "invoiced"}
    assert catalog.states_of("reports") == ()
    assert catalog.UNAPPROVED_STATES < catalog.RECORD_STATES


@pytest.mark.parametrize("status", sorted(catalog.RECORD_STATES))
def test_every_real_state_is_accepted(engine: Engine, status: str) -> None:
    engine.check(CheckRequest(ORG, "u-anna", "view", "invoices", record=Record(status=status)))


@pytest.mark.parametrize("status", ["sent", "viewed", "overdue", "partially_paid"])
def test_an_invoice_past_approval_is_not_blocked(engine: Engine, status: str) -> None:
    d = engine.check(CheckRequest(ORG, "u-fiona", "email", "invoices", product="books",
                                  record=Record(status=status, total=20000.0)))
    assert d.allowed, d.message


@pytest.mark.parametrize("status", ["draft", "pending_approval", "rejected"])
def test_an_invoice_before_approval_stays_blocked(engine: Engine, status: str) -> None:
    d = engine.check(CheckRequest(ORG, "u-fiona", "email", "invoices", product="books",
                                  record=Record(status=status, total=20000.0)))
    assert not d.allowed and d.reason.value == "blocked_until_approved"


def test_an_expired_estimate_is_accepted_and_a_made_up_state_is_named(engine: Engine) -> None:
    engine.check(CheckRequest(ORG, "u-sam", "view", "estimates", record=Record(status="expired")))
    with pytest.raises(InvalidArgument) as err:
        engine.check(CheckRequest(ORG, "u-sam", "view", "estimates", record=Record(status="lost")))
    assert err.value.field == "record.status" and "'lost'" in str(err.value)
