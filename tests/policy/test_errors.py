"""Bad sources fail with a message naming file, line and column, what was found and
what was expected; nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.policy.errors import PolicyError
from authz.policy.sources import read_tree
from tests.policy.conftest import edit


def problems(root: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        read_tree(root)
    return [str(p) for p in info.value.problems]


def test_unknown_module_is_located(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "      items: [view]", "      itemz: [view]")
    (msg,) = problems(policy_root)
    assert msg.startswith("orgs/acme-eu/roles.yaml:9:7: unknown books module")
    assert "found 'itemz'" in msg and "expected one of: customers" in msg


def test_unknown_action(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "items: [view]", "items: [peek]")
    (msg,) = problems(policy_root)
    assert msg.startswith("orgs/acme-eu/roles.yaml:9:15: unknown action") and "'peek'" in msg


def test_redefining_a_predefined_role(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "- id: quotes_only\n    name: Quotes Only",
         "- id: staff\n    name: Quotes Only")
    msgs = problems(policy_root)
    assert any("redefines a predefined books role" in m and "roles.yaml:16:5" in m for m in msgs)


def test_duplicate_role(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "- id: quotes_only", "- id: sales_rep")
    msgs = problems(policy_root)
    assert any("duplicate role 'sales_rep'" in m and "first at orgs/acme-eu/roles.yaml:4:5" in m
               for m in msgs)


def test_unknown_approver_role(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "- roles: [finance_manager]\n      - users",
         "- roles: [finance_boss]\n      - users")
    (msg,) = problems(policy_root)
    assert "approvals.yaml:28:17: unknown approver role in books" in msg
    assert "'finance_boss'" in msg


def test_approver_user_must_be_an_email(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "users: [anna@acme.example]\n      - id: medium",
         "users: [anna]\n      - id: medium")
    (msg,) = problems(policy_root)
    assert "approver user must be an e-mail address" in msg


def test_unreachable_approval_rule(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "when: total >= 1000\n", "when: total >= 20000\n")
    (msg,) = problems(policy_root)
    assert msg.startswith("orgs/acme-eu/approvals.yaml:16:9: approval rule 'medium_invoice' is unreachable")


def test_catch_all_rule_before_others_makes_them_unreachable(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "        when: total >= 10000\n", "")
    msgs = problems(policy_root)
    assert {m.split(": approval rule ")[1].split("'")[1] for m in msgs} == {
        "medium_invoice", "small_invoice"}


def test_contradictory_priorities(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "priority: 2", "priority: 1")
    msgs = problems(policy_root)
    assert any("two approval rules share priority 1" in m for m in msgs)


def test_criteria_that_never_match(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "when: total < 1000",
         "when: total < 1000 and total > 5000")
    (msg,) = problems(policy_root)
    assert "'small_invoice' can never match" in msg


def test_unreadable_criteria(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "when: total < 1000", "when: amount ~ 1000")
    (msg,) = problems(policy_root)
    assert "approvals.yaml:23:9: cannot read criterion" in msg


def test_too_many_levels(policy_root: Path) -> None:
    levels = "".join("      - roles: [finance_manager]\n" for _ in range(11))
    edit(policy_root / "orgs/acme-eu/approvals.yaml",
         "    levels:\n      - roles: [finance_manager]\n      - users: [anna@acme.example]\n",
         "    levels:\n" + levels)
    msgs = problems(policy_root)
    assert any("too many approval levels (11)" in m and "at most 10" in m for m in msgs)


def test_malformed_yaml(policy_root: Path) -> None:
    (policy_root / "orgs/acme-eu/fields.yaml").write_text("books:\n  invoices: [\n")
    (msg,) = problems(policy_root)
    assert msg.startswith("orgs/acme-eu/fields.yaml:3:1: malformed YAML")


def test_integration_set_never_grants_delete(policy_root: Path) -> None:
    edit(policy_root / "shared/integration_user.yaml", "estimates: [view, create, edit]",
         "estimates: [view, create, edit, delete]")
    (msg,) = problems(policy_root)
    assert "shared/integration_user.yaml:10:37: integration users are never granted delete" in msg


def test_many_problems_are_reported_together(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "items: [view]", "items: [peek]")
    edit(policy_root / "orgs/acme-eu/organization.yaml", "edition: professional", "edition: gold")
    msgs = problems(policy_root)
    assert len(msgs) == 2
    assert any("invalid 'edition'" in m and "found 'gold'" in m for m in msgs)
