"""`authz org import`: Books and CRM exports -> policy sources and directory -> compiled
policy -> the decisions the Books data implies; a change in Books shows in `policy diff`;
bad input is named by file, JSON path, found and expected, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from authz.decision import CheckRequest, Decision, Record
from authz.directory import DirectorySnapshot
from authz.directory_file import parse
from authz.engine import PolicySet
from authz.engine.decide import decide
from authz.onboarding import importer
from authz.policy import compiler
from authz.policy.diff import diff_trees
from authz.policy.errors import PolicyError
from authz.policy.sources import read_tree
from authz.policy.yamlsrc import parse as parse_yaml
from authz_server.cli.org_import import DEFAULT_ROOT, EXAMPLES

EXPORTS = EXAMPLES / "initech-in"
ORG = "initech-in"
# CRM user ids (the CRM's own), as crm_users.json lists them
ARJUN, KAVYA, ROHAN, MEERA, VIKRAM, SANA = (
    f"41508680000002250{n}" for n in ("27", "41", "55", "69", "83", "97"))
DEV = "4150868000000225111"


def _root(tmp: Path, exports: Path = EXPORTS) -> Path:
    """A policy root holding the shared sources and one freshly imported organization."""
    root = tmp / "policies"
    shutil.copytree(DEFAULT_ROOT / "shared", root / "shared")
    imp = importer.build(exports, "exports")
    importer.validate(imp, root)
    importer.write(imp, root)
    return root


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[PolicySet, DirectorySnapshot]:
    root = _root(tmp_path_factory.mktemp("import"))
    compiler.write_atomic(compiler.render(read_tree(root)), root / "generated")
    rel = f"orgs/{ORG}/{importer.DIRECTORY}"
    snap = parse(parse_yaml((root / rel).read_text(), rel)).snapshot(1)
    return PolicySet(root / "generated"), snap


def _ask(compiled: tuple[PolicySet, DirectorySnapshot], user: str, action: str, module: str,
         **kw: Any) -> Decision:
    policies, snap = compiled
    return decide(CheckRequest(ORG, user, action, module, **kw), policies.get(ORG), snap)


@pytest.mark.parametrize("org", ["initech-in", "globex-us"])
def test_the_shipped_exports_reproduce_the_committed_sources_and_directory(org: str) -> None:
    imp = importer.build(EXAMPLES / org, f"examples/exports/{org}")
    assert importer.stale(imp, DEFAULT_ROOT) == []
    assert importer.build(EXAMPLES / org, f"examples/exports/{org}") == imp  # deterministic


def test_a_custom_role_keeps_its_books_id_and_messages_show_its_name(compiled: Any) -> None:
    d = _ask(compiled, ARJUN, "create", "invoices", record=Record(total=1200))
    assert d.allowed and d.identity.roles[0] == "books:982000000000044"
    assert "Sales Executive" in d.message
    assert d.approval is not None and d.approval.outcome == "auto_approved"  # small invoice rule
    assert not _ask(compiled, ARJUN, "delete", "invoices").allowed
    written = _ask(compiled, ARJUN, "edit", "invoices", record=Record(status="draft"),
                   write_fields=("discount",))
    assert (written.allowed, written.reason) == (False, "field_not_writable")


def test_report_sections_excepted_are_not_granted(compiled: Any) -> None:
    d = _ask(compiled, ARJUN, "view", "reports", product="books")
    assert (d.allowed, d.reason) == (False, "action_not_granted")
    assert _ask(compiled, ARJUN, "view", "reports", product="subscriptions").allowed
    assert _ask(compiled, MEERA, "view", "reports", product="books").allowed  # full access, nothing excepted


def test_assigned_customers_come_from_contact_owners(compiled: Any) -> None:
    own = _ask(compiled, KAVYA, "edit", "estimates",
               record=Record(customer_id="982000000567003", status="draft"))
    assert own.allowed, own.message
    other = _ask(compiled, KAVYA, "edit", "estimates",
                 record=Record(customer_id="982000000567004", status="draft"))
    assert (other.allowed, other.reason) == (False, "out_of_scope")
    rohan = _ask(compiled, ROHAN, "view", "invoices", record=Record(customer_id="982000000567002"))
    assert rohan.allowed  # predefined Staff (Assigned Customers Only)
    neither = _ask(compiled, ROHAN, "view", "invoices")
    assert neither.reason == "out_of_scope" and "record.customer_id" in neither.message


def test_approvers_by_role_and_by_books_user_id(compiled: Any) -> None:
    pending = {"status": "pending_approval", "total": 600000.0}
    assert _ask(compiled, MEERA, "approve", "invoices",
                record=Record(approval_level=1, **pending)).allowed  # type: ignore[arg-type]
    level2 = Record(approval_level=2, **pending)  # type: ignore[arg-type]
    assert _ask(compiled, ARJUN, "approve", "invoices", record=level2).allowed  # named by id
    d = _ask(compiled, MEERA, "approve", "invoices", record=level2)
    assert (d.allowed, d.reason) == (False, "not_approver")
    assert "Arjun Mehta (books user 982000000000103)" in d.message
    big = _ask(compiled, KAVYA, "create", "estimates",
               record=Record(customer_id="982000000567003"))
    assert big.approval is not None and big.approval.outcome == "pending_approval"
    created = _ask(compiled, MEERA, "create", "invoices", record=Record(total=600000))
    assert created.approval is not None and created.approval.approver_roles == (
        "books:982000000000045", "books:admin")


def test_identities_products_and_protected_data(compiled: Any) -> None:
    assert _ask(compiled, VIKRAM, "create", "estimates").allowed  # integration user
    assert _ask(compiled, DEV, "view", "invoices").reason == "not_migrated"
    assert _ask(compiled, SANA, "view", "invoices").reason == "crm_user_disabled"
    sub = _ask(compiled, ARJUN, "create", "subscriptions")
    assert sub.allowed and sub.product == "subscriptions"
    assert "pan_number" in _ask(compiled, ARJUN, "view", "customers").hidden_fields
    assert "pan_number" not in _ask(compiled, MEERA, "view", "customers").hidden_fields


def _edit(folder: Path, name: str, change: Any) -> None:
    path = folder / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def test_a_change_in_books_shows_in_policy_diff(tmp_path: Path) -> None:
    before = read_tree(_root(tmp_path / "a"))
    changed = tmp_path / "exports"
    shutil.copytree(EXPORTS, changed)

    def lose_mark_as_sent(d: dict[str, Any]) -> None:
        role = next(r for r in d["roles"] if r["role_name"] == "Sales Executive")
        role["sections"]["sales"]["invoices"]["more_permissions"].remove("mark_as_sent")

    def meera_approves_purchase_orders(d: dict[str, Any]) -> None:
        po = next(m for m in d["modules"] if m["module"] == "purchase_orders")
        po["levels"][1]["approvers"] = [{"type": "user", "id": "982000000000109"}]

    _edit(changed, "books_roles.json", lose_mark_as_sent)
    _edit(changed, "books_approvals.json", meera_approves_purchase_orders)
    after = read_tree(_root(tmp_path / "b", changed))
    lines = diff_trees(before, after)
    assert "  role books:982000000000044 (Sales Executive) on books/invoices: - mark_as_sent" in lines
    assert ("  approvers of books/purchase_orders rule levels: + level 2: "
            "user:books:982000000000109") in lines
    assert ("  approvers of books/purchase_orders rule levels: - level 2: "
            "user:books:982000000000103") in lines


def test_bad_input_names_file_json_path_found_and_expected_and_writes_nothing(
        tmp_path: Path) -> None:
    bad = tmp_path / "exports"
    shutil.copytree(EXPORTS, bad)

    def unknown_role(d: dict[str, Any]) -> None:
        d["users"][1]["role_id"] = "982000000000099"
        d["users"][2]["status"] = "on_leave"

    _edit(bad, "books_users.json", unknown_role)
    with pytest.raises(PolicyError) as info:
        importer.build(bad, "exports")
    text = [str(p) for p in info.value.problems]
    assert any(t.startswith("exports/books_users.json:") and "$.users[1].role_id: unknown books "
               "role id (found '982000000000099'; expected one of the roles export" in t
               and "982000000000044 (Sales Executive)" in t for t in text), text
    assert any("$.users[2].status" in t and "'on_leave'" in t for t in text), text


def test_cli_check_write_and_refusal(tmp_path: Path) -> None:
    from authz_server.cli import main

    root = tmp_path / "policies"
    shutil.copytree(DEFAULT_ROOT / "shared", root / "shared")
    assert main(["org", "import", "--root", str(root), "--check", str(EXPORTS)]) == 1
    assert main(["org", "import", "--root", str(root), str(EXPORTS)]) == 0
    assert main(["org", "import", "--root", str(root), "--check", str(EXPORTS)]) == 0
    bad = tmp_path / "bad"
    shutil.copytree(EXPORTS, bad)
    _edit(bad, "organization.json", lambda d: d.update(integration_owner="nobody"))
    (root / "orgs").rename(tmp_path / "kept")
    assert main(["org", "import", "--root", str(root), str(bad)]) == 2
    assert not (root / "orgs").exists()  # nothing written
