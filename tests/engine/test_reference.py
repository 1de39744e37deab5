"""OrgIndex against the Casbin reference on the example organization acme-eu.

Question by question (grants, field access, approvers, blocked actions), for every role
and every module, then whole decisions for every directory user.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from authz import catalog
from authz.decision import Channel, CheckRequest, Record
from authz.directory import DirectorySnapshot
from authz.directory_file import read
from authz.engine.decide import decide
from authz.engine.index import OrgIndex, load_org
from authz.engine.reference import ReferenceView, integration_subject, user_links
from authz.policy.compiler import INTEGRATION_ROLE

POLICIES = Path(__file__).resolve().parents[2] / "authz" / "policies"
GENERATED = POLICIES / "generated"
ORG = "acme-eu"


@pytest.fixture(scope="module")
def snap() -> DirectorySnapshot:
    return read(POLICIES / "orgs" / ORG / "tests" / "directory.yaml").snapshot()


@pytest.fixture(scope="module")
def idx() -> OrgIndex:
    return load_org(GENERATED, ORG)


def _ref(snap: DirectorySnapshot, filtered: bool) -> ReferenceView:
    return ReferenceView.load(GENERATED / "orgs" / f"{ORG}.csv",
                              GENERATED / "orgs" / f"{ORG}.json", snap, filtered=filtered)


@pytest.fixture(scope="module")
def ref(snap: DirectorySnapshot) -> ReferenceView:
    return _ref(snap, filtered=True)


@pytest.fixture(scope="module")
def full(snap: DirectorySnapshot) -> ReferenceView:
    return _ref(snap, filtered=False)


def _roles(idx: OrgIndex) -> list[str]:
    return [*idx.role_names, INTEGRATION_ROLE]


def _modules(idx: OrgIndex) -> list[tuple[str, str]]:
    return [(p, m) for p in idx.products for m in catalog.MODULES[p]]


def test_grants_agree_for_every_role_module_action(idx: OrgIndex, ref: ReferenceView) -> None:
    asked = granted = 0
    for role, (product, module) in itertools.product(_roles(idx), _modules(idx)):
        for action, assigned, channel in itertools.product(
                catalog.actions_for(module), (True, False), ("crm", "direct")):
            want = idx.grant((role,), product, module, action, assigned, channel)
            got = ref.grant((role,), product, module, action, assigned, channel)
            assert (got and got.line) == (want and want.line), (role, module, action)
            asked += 1
            granted += want is not None
    assert granted > 1000 and asked - granted > 1000  # both answers are well exercised


def test_filtered_reference_answers_as_the_full_scan(idx: OrgIndex, ref: ReferenceView,
                                                     full: ReferenceView) -> None:
    for role, (product, module) in itertools.product(_roles(idx), _modules(idx)[::4]):
        for action in catalog.actions_for(module)[::3]:
            args = ((role,), product, module, action, False, "crm")
            assert (ref.grant(*args) is None) == (full.grant(*args) is None)
        assert ref.masks((role,), product, module) == full.masks((role,), product, module)


def test_field_masks_agree_for_single_and_combined_roles(idx: OrgIndex, ref: ReferenceView
                                                         ) -> None:
    roles = _roles(idx)
    combos = [(r,) for r in roles] + list(itertools.combinations(roles, 2))
    seen_hidden = seen_read_only = False
    for key in idx.manifest["fields"]:
        product, module = key.split("/")
        for combo in combos:
            want = idx.masks(combo, product, module)
            assert ref.masks(combo, product, module) == want, (combo, key)
            seen_hidden |= bool(want[0])
            seen_read_only |= bool(want[1])
    assert seen_hidden and seen_read_only


def test_approvers_and_blocked_actions_agree(idx: OrgIndex, ref: ReferenceView,
                                             snap: DirectorySnapshot) -> None:
    # Who asks: each role alone, and each directory user with their own roles and e-mail
    # (the reference follows the e-mail subject's g links, as decide's callers do).
    askers = [((role,), "") for role in _roles(idx)]
    for subject, roles in user_links(snap, idx.products).items():
        email = subject.removeprefix("user:") if subject.startswith("user:") else ""
        askers.append((roles, email))
    approvers = 0
    for (product, module), info in idx.approvals.items():
        for action in catalog.actions_for(module):
            assert ref.blocked(product, module, action) == (action in info.blocked) == (
                (product, module, action) in idx.blocked)
        for flow in info.flows:
            for level, (roles, email) in itertools.product(range(1, flow.levels + 2), askers):
                want = idx.is_approver(roles, email, product, module, flow.id, level)
                assert ref.is_approver(roles, email, product, module, flow.id, level) == want
                approvers += want
    assert approvers > 0


def test_directory_users_are_linked_to_their_active_roles(snap: DirectorySnapshot) -> None:
    links = user_links(snap, catalog.PRODUCTS)
    # roles, then the user's ids in each product (approvers may be named by id)
    assert links["user:sam@acme.example"] == ("books:sales_rep",
                                              "subscriptions:subscription_sales",
                                              "user:books:b-sam", "user:subscriptions:s-sam")
    assert links["user:anna@acme.example"][:2] == ("books:admin", "subscriptions:admin")
    assert links[integration_subject("u-ivy")] == (INTEGRATION_ROLE,)
    assert "user:ian@acme.example" not in links  # inactive in Books
    assert "user:olga@acme.example" not in links  # CRM user disabled
    assert user_links(snap, (catalog.BOOKS,))["user:sam@acme.example"] == ("books:sales_rep",
                                                                           "user:books:b-sam")


def test_decisions_agree_for_every_user(idx: OrgIndex, ref: ReferenceView, full: ReferenceView,
                                        snap: DirectorySnapshot) -> None:
    cases = [("create", "invoices", 50_000.0, "draft"), ("approve", "invoices", 50_000.0,
             "pending_approval"), ("edit", "estimates", None, "approved"),
             ("view", "customers", None, ""), ("email", "invoices", 10.0, "draft"),
             ("final_approve", "purchase_orders", None, "pending_approval"),
             ("edit", "subscriptions", None, "")]
    reasons = set()
    for user, (action, module, total, status), channel in itertools.product(
            [*snap.crm_users, "nobody"], cases, Channel):
        req = CheckRequest(ORG, user, action, module, write_fields=("discount", "tax_id"),
                           record=Record(owner="u-stella", total=total, status=status,
                                         approval_level=1, created_by="u-sam"),
                           channel=channel, explain=True)
        want = dataclasses.replace(decide(req, idx, snap), decision_id="")
        for view in (ref, full):
            got = decide(req, idx, snap, view=view.for_request(req))
            assert dataclasses.replace(got, decision_id="") == want
        reasons.add(want.reason)
    assert len(reasons) >= 8
