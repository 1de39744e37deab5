"""The compiler: deterministic, atomic, committed output that pycasbin enforces as written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import casbin
import pytest

from authz.policy import compiler
from authz.policy.sources import read_tree
from tests.policy.conftest import REPO_ROOT, edit


def authz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "authz_server.cli", *args],
                          capture_output=True, text=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_committed_output_matches_sources() -> None:
    tree = read_tree(REPO_ROOT)
    assert compiler.stale(compiler.render(tree), REPO_ROOT / "generated") == []


def test_compiling_twice_gives_identical_bytes(policy_root: Path) -> None:
    assert authz("policy", "compile", "--root", str(policy_root)).returncode == 0
    first = snapshot(policy_root / "generated")
    assert authz("policy", "compile", "--root", str(policy_root)).returncode == 0
    assert snapshot(policy_root / "generated") == first


def test_check_names_stale_files_and_fails(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "items: [view]", "items: [view, create]")
    result = authz("policy", "compile", "--check", "--root", str(policy_root))
    assert result.returncode == 1
    assert "orgs/acme-eu.csv" in result.stderr and "orgs/acme-eu.json" in result.stderr
    assert "globex-us" not in result.stderr


def test_each_file_names_its_sources_and_revision() -> None:
    csv = (REPO_ROOT / "generated/orgs/acme-eu.csv").read_text()
    manifest = json.loads((REPO_ROOT / "generated/orgs/acme-eu.json").read_text())
    assert "# source: orgs/acme-eu/roles.yaml" in csv
    assert "orgs/acme-eu/approvals.yaml" in manifest["sources"]
    assert f"# revision: {manifest['revision']}" in csv


def test_revision_changes_only_for_the_changed_org(policy_root: Path) -> None:
    tree = read_tree(policy_root)
    before = {org.id: compiler.compile_org(org, tree).revision for org in tree.orgs}
    edit(policy_root / "orgs/acme-eu/fields.yaml", "roles: {sales_rep: read_only, staff_assigned",
         "roles: {sales_rep: hidden, staff_assigned")
    tree = read_tree(policy_root)
    after = {org.id: compiler.compile_org(org, tree).revision for org in tree.orgs}
    assert after["acme-eu"] != before["acme-eu"]
    assert after["globex-us"] == before["globex-us"]


def test_broken_source_fails_located_and_leaves_output_untouched(policy_root: Path) -> None:
    before = snapshot(policy_root / "generated")
    edit(policy_root / "orgs/acme-eu/roles.yaml", "      items: [view]\n", "      items: [view\n")
    result = authz("policy", "compile", "--root", str(policy_root))
    assert result.returncode == 2
    assert f"{policy_root}/orgs/acme-eu/roles.yaml:" in result.stderr
    assert "malformed YAML" in result.stderr and "nothing written" in result.stderr
    assert snapshot(policy_root / "generated") == before


def test_failed_write_keeps_previous_output(policy_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = policy_root / "generated"
    before = snapshot(out)
    tree = read_tree(policy_root)
    files = compiler.render(tree)
    files["orgs/acme-eu.csv"] = b"changed\n"

    def broken_rename(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(compiler.os, "rename", broken_rename)
    with pytest.raises(OSError):
        compiler.write_atomic(files, out)
    assert snapshot(out) == before


def _enforcer(org: str) -> casbin.Enforcer:
    gen = REPO_ROOT / "generated"
    return casbin.Enforcer(str(gen / "model.conf"), str(gen / f"orgs/{org}.csv"))


def test_pycasbin_enforces_role_grants_as_the_source_describes() -> None:
    e = _enforcer("acme-eu")
    e.add_grouping_policy("user:sam@acme.example", "books:sales_rep")
    tree = read_tree(REPO_ROOT)
    org = next(o for o in tree.orgs if o.id == "acme-eu")
    sales_rep = next(r for r in org.roles if r.key == "books:sales_rep")
    from authz import catalog

    for module in catalog.BOOKS_MODULES:
        for action in catalog.actions_for(module):
            want = action in sales_rep.grants.get(module, ())
            got = e.enforce("user:sam@acme.example", "books", module, action, "no", "crm")
            assert got == want, (module, action)


def test_pycasbin_scope_channel_fields_and_approvers() -> None:
    e = _enforcer("acme-eu")
    e.add_grouping_policy("user:quinn@acme.example", "books:quotes_only")
    e.add_grouping_policy("user:ivy@acme.example", "integration:user")
    e.add_grouping_policy("user:fiona@acme.example", "books:finance_manager")
    # assigned customers only
    assert e.enforce("user:quinn@acme.example", "books", "estimates", "create", "yes", "crm")
    assert not e.enforce("user:quinn@acme.example", "books", "estimates", "create", "no", "crm")
    # integration users: CRM only, no delete
    assert e.enforce("user:ivy@acme.example", "books", "invoices", "create", "no", "crm")
    assert not e.enforce("user:ivy@acme.example", "books", "invoices", "create", "no", "direct")
    assert not e.enforce("user:ivy@acme.example", "books", "invoices", "delete", "no", "crm")
    # fields: quotes-only sees estimate discounts read-only; personal data hidden
    f = e.new_enforce_context("2")
    assert e.enforce(f, "user:quinn@acme.example", "books", "estimates", "discount", "read_only")
    assert e.enforce(f, "user:ivy@acme.example", "books", "customers", "tax_id", "hidden")
    assert e.enforce(f, "user:fiona@acme.example", "books", "customers", "tax_id", "read_write")
    # approvers: level 1 of large invoices is finance managers; level 2 is Anna by e-mail
    a = e.new_enforce_context("3")
    assert e.enforce(a, "user:fiona@acme.example", "books", "invoices", "large_invoice", "1")
    assert not e.enforce(a, "user:fiona@acme.example", "books", "invoices", "large_invoice", "2")
    assert e.enforce(a, "user:anna@acme.example", "books", "invoices", "large_invoice", "2")
    b = e.new_enforce_context("4")
    assert e.enforce(b, "books", "invoices", "email")
    assert not e.enforce(b, "books", "bills", "email")


def test_every_generated_policy_loads_in_pycasbin() -> None:
    for csv in sorted((REPO_ROOT / "generated/orgs").glob("*.csv")):
        e = _enforcer(csv.stem)
        assert e.get_policy(), csv
