"""Policy tools for CI: `policy test --junit/--json/--explain`, `policy diff --exit-code`,
validation that reports the root cause first; `authz check --explain` from a real server
names the YAML file:line that granted or refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

from tests.e2e.serverproc import run_authz, seed, start_server
from tests.policy.conftest import REPO_ROOT, edit
from tests.policy.test_compile import authz

FIELDS_TEST = "orgs/acme-eu/tests/fields.test.yaml"


def test_junit_and_json_report_every_case_with_its_place(policy_root: Path,
                                                         tmp_path: Path) -> None:
    edit(policy_root / FIELDS_TEST, "message_contains: discount (read only)",
         "message_contains: discount (hidden)")
    junit = tmp_path / "policy.xml"
    result = authz("policy", "test", "--root", str(policy_root), "--junit", str(junit))
    assert result.returncode == 1
    suites = ET.parse(junit).getroot()
    acme = next(s for s in suites if s.get("name") == "acme-eu")
    cases = acme.findall("testcase")
    assert int(acme.get("tests", "0")) == len(cases) > 50 and acme.get("failures") == "1"
    (failed,) = [c for c in cases if c.find("failure") is not None]
    assert failed.get("file") == str(policy_root / FIELDS_TEST) and failed.get("line") == "12"
    failure = failed.find("failure")
    assert failure is not None and "discount (hidden)" in (failure.get("message") or "")
    out = authz("policy", "test", "--root", str(policy_root), "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["failed"] == 1 and report["passed"] == int(suites.get("tests", "0")) - 1
    org = next(o for o in report["organizations"] if o["org_id"] == "acme-eu")
    bad = [c for c in org["cases"] if not c["passed"]]
    assert [(c["line"], c["decision"], c["reason"]) for c in bad] == [
        (12, "deny", "field_not_writable")]


def test_diff_exit_code_says_whether_decisions_change(policy_root: Path) -> None:
    same = authz("policy", "diff", "--exit-code", str(REPO_ROOT), str(policy_root))
    assert same.returncode == 0 and "no change in decisions" in same.stdout
    edit(policy_root / "orgs/acme-eu/roles.yaml",
         "invoices: [view, create, edit, submit, email, mark_as_sent]",
         "invoices: [view, create, edit, submit, email]")
    changed = authz("policy", "diff", "--exit-code", str(REPO_ROOT), str(policy_root))
    assert changed.returncode == 1 and "mark_as_sent" in changed.stdout
    plain = authz("policy", "diff", str(REPO_ROOT), str(policy_root))
    assert plain.returncode == 0 and plain.stdout == changed.stdout


def test_explain_names_the_yaml_line_that_granted_or_refused() -> None:
    out = authz("policy", "test", "--root", str(REPO_ROOT), "--org", "acme-eu", "--explain")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()

    def sources_of(case: str) -> list[str]:
        i = next(n for n, line in enumerate(lines) if line.endswith(": " + case))
        following = []
        for line in lines[i + 1:]:
            if not line.strip().startswith("source:"):
                break
            following.append(line.strip())
        return following

    # A grant: the role's permission entry in roles.yaml, and the approval rule that applies.
    assert sources_of("a large invoice from a sales rep waits for a finance manager") == [
        "source: orgs/acme-eu/roles.yaml:13: role Sales Representative (books:sales_rep) "
        "grants create on invoices",
        "source: orgs/acme-eu/approvals.yaml:10: approval rule large_invoice"]
    # Denials: the field rule, the approval settings, the role that lacks the grant.
    assert sources_of("approvers may not approve their own records in this organization") == [
        "source: orgs/acme-eu/organization.yaml: organization settings"]
    assert sources_of("staff final approval is not granted") == [
        "source: shared/predefined_roles.yaml:21: role Staff (books:staff) grants no "
        "final_approve on purchase_orders"]
    assert any(s.strip().startswith("source: orgs/acme-eu/fields.yaml:") for s in lines
               if "field rule discount" in s)


def test_one_yaml_slip_in_roles_reports_the_slip_first_and_alone(policy_root: Path) -> None:
    edit(policy_root / "orgs/acme-eu/roles.yaml", "  - id: quotes_only", " - id: quotes_only")
    out = authz("policy", "validate", "--root", str(policy_root))
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "roles.yaml:16" in errors[0] and "malformed YAML" in errors[0]
    assert "likely follow from the error(s) above" in out.stderr
    edit(policy_root / "orgs/acme-eu/roles.yaml", " - id: quotes_only", "  - id: quotes_only")
    edit(policy_root / "orgs/acme-eu/roles.yaml", "  - id: finance_manager",
         "  - id: finance-manager")
    out = authz("policy", "validate", "--root", str(policy_root))
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "roles.yaml:22" in errors[0] and "finance-manager" in errors[0]


def test_check_explain_from_a_real_server_names_the_yaml(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    gen = tmp_path / "generated"
    shutil.copytree(REPO_ROOT / "generated", gen)
    server = start_server(tmp_path, url, "--policy-dir", str(gen))
    try:
        denied = run_authz("check", "--server", server.address, "--org", "acme-eu", "--user",
                           "u-sam", "--action", "create", "--module", "invoices", "--total",
                           "20000", "--write-field", "discount", "--explain", check=False)
        assert denied.returncode == 1, denied.stderr
        assert "source: orgs/acme-eu/fields.yaml:" in denied.stdout
        assert "field rule discount" in denied.stdout
        allowed = run_authz("check", "--server", server.address, "--org", "acme-eu", "--user",
                            "u-sam", "--action", "view", "--module", "invoices", "--explain",
                            check=False)
        assert allowed.returncode == 0
        assert "source: orgs/acme-eu/roles.yaml:13: role Sales Representative" in allowed.stdout
    finally:
        assert server.stop() == 0


def test_explain_of_a_legacy_decision_names_the_settings() -> None:
    out = authz("policy", "test", "--root", str(REPO_ROOT), "--org", "globex-us", "--explain",
                "--json")
    report = json.loads(out.stdout)
    cases = [c for o in report["organizations"] for c in o["cases"]
             if c.get("reason") == "legacy_mode"]
    assert cases, "globex-us has legacy-mode cases"
    assert cases[0]["explain"] == [
        "source: orgs/globex-us/organization.yaml: organization settings",
        "source: shared/release.yaml: phased release of the unified mode"]
