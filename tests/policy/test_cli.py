"""`authz policy test`, `validate` and `diff` as a policy author uses them."""

from __future__ import annotations

from pathlib import Path

from tests.policy.conftest import REPO_ROOT, edit
from tests.policy.test_compile import authz


def test_repository_suites_pass_and_report_coverage() -> None:
    result = authz("policy", "test", "--root", str(REPO_ROOT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "organization acme-eu:" in result.stdout and " 0 failed" in result.stdout
    # globex-us is in legacy mode, so its roles are never exercised: coverage says so.
    assert "not exercised, roles" in result.stdout and "books:460000000000051" in result.stdout


def test_a_wrong_expectation_fails_with_its_location(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/tests/fields.test.yaml", "message_contains: discount (read only)",
         "message_contains: discount (hidden)")
    result = authz("policy", "test", "--root", str(policy_root), "--org", "acme-eu")
    assert result.returncode == 1
    assert f"FAIL {policy_root}/orgs/acme-eu/tests/fields.test.yaml:12:5" in result.stdout
    assert "message: expected to contain 'discount (hidden)'" in result.stdout


def test_uncovered_rules_are_listed(policy_root: Path) -> None:
    (policy_root / "orgs/acme-eu/tests/approvals.test.yaml").unlink()
    result = authz("policy", "test", "--root", str(policy_root), "--org", "acme-eu")
    assert result.returncode == 0
    assert "books/invoices rule large_invoice (orgs/acme-eu/approvals.yaml:10)" in result.stdout


def test_validate_rejects_a_bad_test_case(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/tests/grants.test.yaml", "    user: u-tim\n    action: create",
         "    usr: u-tim\n    action: create")
    result = authz("policy", "validate", "--root", str(policy_root))
    assert result.returncode == 2
    assert "grants.test.yaml:" in result.stderr and "unknown key 'usr'" in result.stderr


def test_diff_reports_outcome_changes_per_role_and_module(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "      items: [view]", "      items: [view, create]")
    edit(policy_root / "orgs/acme-eu/fields.yaml", "roles: {quotes_only: read_only}",
         "roles: {quotes_only: hidden}")
    edit(policy_root / "orgs/acme-eu/approvals.yaml", "when: total >= 10000", "when: total >= 50000")
    result = authz("policy", "diff", str(REPO_ROOT), str(policy_root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "organization acme-eu:" in out and "globex-us" not in out
    assert "role books:sales_rep on books/items: + create" in out
    assert "role books:quotes_only field books/estimates.discount: read_only -> hidden" in out
    assert ("approval rule books/invoices large_invoice: priority 1, when total >= 10000, levels "
            "(2 levels) -> priority 1, when total >= 50000, levels (2 levels)") in out


def test_diff_of_identical_trees(policy_root: Path) -> None:
    result = authz("policy", "diff", str(REPO_ROOT), str(policy_root))
    assert result.stdout.strip() == "no change in decisions"


def test_diff_against_a_git_revision() -> None:
    result = authz("policy", "diff", "HEAD")
    assert result.returncode == 0, result.stderr
    bad = authz("policy", "diff", "no-such-revision")
    assert bad.returncode == 2 and "neither a folder nor a git revision" in bad.stderr


def test_a_test_directory_naming_an_unknown_role_is_an_error_at_its_line(
        policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/tests/directory.yaml", "role: sales_rep}", "role: sales_repp}")
    result = authz("policy", "test", "--root", str(policy_root), "--org", "acme-eu")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "orgs/acme-eu/tests/directory.yaml:20:59: books user b-sam (sam@acme.example): " \
        "unknown books role (found 'sales_repp'" in result.stderr
    assert "1 problem(s)" in result.stderr  # once, though five suites read the directory
