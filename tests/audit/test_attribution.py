"""Attribution names the user's own identity, name and address; never the owner's."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.attribution import AttributionDenied, Operation, PriorDecision, attribute
from authz.decision import IdentityKind, Mode
from authz.directory import DirectorySnapshot
from authz.directory_file import read
from authz.engine import PolicySet
from authz.errors import InvalidArgument, PermissionDenied

ROOT = Path(__file__).resolve().parents[2] / "authz/policies/orgs"


def acme() -> tuple[PolicySet, DirectorySnapshot]:
    return PolicySet(), read(ROOT / "acme-eu/tests/directory.yaml").snapshot(3)


def test_a_books_user_acts_as_themself() -> None:
    policies, snap = acme()
    a = attribute(policies.get("acme-eu"), snap,
                  Operation("u-sam", "email", "invoices", "inv-1", product="books"))
    assert a.mode == Mode.UNIFIED and a.product == "books"
    assert a.identity.kind == IdentityKind.FINANCE_USER
    assert (a.act_as, a.display_name, a.send_from) == ("b-sam", "Sam Weber", "sam@acme.example")
    assert a.attribution_id and a.directory_revision == 3


def test_an_integration_user_acts_as_their_integration_user() -> None:
    policies, snap = acme()
    a = attribute(policies.get("acme-eu"), snap, Operation("ivy@acme.example", "create", "invoices"))
    assert a.identity.kind == IdentityKind.INTEGRATION_USER
    assert (a.act_as, a.send_from) == ("iu-ivy", "ivy@acme.example")


@pytest.mark.parametrize(("user", "reason"), [("u-noah", "not_migrated"),
                                              ("u-olga", "crm_user_disabled"),
                                              ("u-ian", "finance_user_inactive"),
                                              ("nobody@acme.example", "user_unknown")])
def test_no_finance_identity_is_permission_denied_never_the_owner(user: str, reason: str) -> None:
    policies, snap = acme()
    with pytest.raises(AttributionDenied) as info:
        attribute(policies.get("acme-eu"), snap, Operation(user, "create", "invoices"))
    assert info.value.reason == reason


def test_legacy_mode_says_it_acts_as_the_integration_owner() -> None:
    policies = PolicySet()
    snap = read(ROOT / "globex-us/tests/directory.yaml").snapshot(1)
    a = attribute(policies.get("globex-us"), snap, Operation("u-homer", "create", "invoices"))
    assert a.mode == Mode.LEGACY and a.identity.kind == IdentityKind.INTEGRATION_OWNER
    assert a.act_as == "u-hank" and "legacy mode" in a.send_from_note


def test_a_cited_decision_must_match_the_operation() -> None:
    policies, snap = acme()
    org = policies.get("acme-eu")
    op = Operation("u-sam", "email", "invoices", "inv-1", product="books")
    ok = PriorDecision("d1", "acme-eu", "u-sam", "email", "invoices", "inv-1", True)
    assert attribute(org, snap, op, ok).decision_id == "d1"
    cases = [
        (PriorDecision("d2", "other-org", "u-sam", "email", "invoices", "inv-1", True), "organization"),
        (PriorDecision("d3", "acme-eu", "u-paul", "email", "invoices", "inv-1", True), "another user"),
        (PriorDecision("d4", "acme-eu", "u-sam", "view", "invoices", "inv-1", True), "not email"),
        (PriorDecision("d5", "acme-eu", "u-sam", "email", "invoices", "inv-2", True), "record inv-2"),
    ]
    for prior, text in cases:
        with pytest.raises(InvalidArgument, match=text):
            attribute(org, snap, op, prior)
    with pytest.raises(PermissionDenied, match="did not allow"):
        attribute(org, snap, op, PriorDecision("d6", "acme-eu", "u-sam", "email", "invoices", "", False))


def test_a_subscriptions_operation_is_done_as_the_subscriptions_user() -> None:
    policies, snap = acme()
    org = policies.get("acme-eu")
    a = attribute(org, snap, Operation("u-sam", "create", "invoices", product="subscriptions"))
    assert (a.act_as, a.product, a.identity.books_user_id) == ("s-sam", "subscriptions", "")
    assert a.identity.subscriptions_user_id == "s-sam" and a.display_name == "Sam Weber"
    # A module only Subscriptions has needs no product; nor does a user of one product.
    assert attribute(org, snap, Operation("u-sam", "create", "subscriptions")).act_as == "s-sam"
    assert attribute(org, snap, Operation("u-bea", "view", "invoices")).act_as == "s-bea"
    # The cited Check decision names the product when the request does not.
    prior = PriorDecision("d1", "acme-eu", "u-sam", "view", "invoices", "", True, "subscriptions")
    assert attribute(org, snap, Operation("u-sam", "view", "invoices"), prior).act_as == "s-sam"
    with pytest.raises(InvalidArgument, match="made in subscriptions, not books"):
        attribute(org, snap, Operation("u-sam", "view", "invoices", product="books"), prior)


def test_an_ambiguous_product_is_refused_and_a_missing_identity_never_borrows_another() -> None:
    policies, snap = acme()
    org = policies.get("acme-eu")
    with pytest.raises(InvalidArgument) as err:
        attribute(org, snap, Operation("u-sam", "view", "invoices"))
    assert err.value.field == "product"
    with pytest.raises(AttributionDenied) as denied:  # Fiona is a Books user only
        attribute(org, snap, Operation("u-fiona", "view", "invoices", product="subscriptions"))
    assert denied.value.reason == "no_product_identity"
    with pytest.raises(InvalidArgument) as bad:
        attribute(org, snap, Operation("u-sam", "view", "plans", product="books"))
    assert bad.value.field == "module"
