"""Policy test suites: YAML cases beside an organization's sources, run through the
real compiler and engine, with a coverage report of what no case exercised.

    # orgs/acme-eu/tests/invoices.test.yaml
    directory: directory.yaml          # beside this file (the default)
    tests:
      - name: a sales rep's large invoice waits for a finance manager
        user: u-sam
        action: create
        module: invoices
        record: {total: 20000}
        expect:
          decision: allow
          reason: granted
          approval: {outcome: pending_approval, rule: large_invoice, level: 1}
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authz.decision import Channel, CheckRequest, Decision, Record
from authz.directory import DirectorySnapshot
from authz.directory_check import DirectoryPolicy
from authz.directory_file import DirectoryFile
from authz.directory_file import parse as parse_directory
from authz.engine.decide import decide
from authz.engine.index import OrgIndex, load_org
from authz.errors import AuthzError
from authz.policy import compiler
from authz.policy.errors import Location, PolicyError, Problem
from authz.policy.model import Organization, PolicyTree
from authz.policy.yamlsrc import Source, load

_CASE_KEYS = {"name", "user", "action", "module", "product", "channel", "record",
              "read_fields", "write_fields", "expect"}
_EXPECT_KEYS = {"decision", "reason", "message_contains", "hidden_fields", "read_only_fields",
                "approval", "blocked_until_approved", "identity", "product", "error"}
_RECORD_KEYS = {"record_id", "customer_id", "owner", "total", "currency", "status",
                "approval_level", "created_by", "location"}


@dataclass(slots=True)
class Case:
    name: str
    where: Location
    request: CheckRequest
    expect: dict[str, Any]


@dataclass(slots=True)
class Failure:
    case: Case
    problems: list[str]


@dataclass(slots=True)
class Coverage:
    """What an organization's cases exercised, against what its policy contains."""

    roles: set[str] = field(default_factory=set)
    grants: set[str] = field(default_factory=set)
    fields: set[tuple[str, str, str]] = field(default_factory=set)
    flows: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass(slots=True)
class Outcome:
    """One case as it ran: the decision (or refusal) and what did not match."""

    case: Case
    decision: Decision | AuthzError
    problems: list[str]


@dataclass(slots=True)
class OrgResult:
    org_id: str
    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # every case, in file order
    index: OrgIndex | None = None  # the compiled policy the cases ran against
    coverage: Coverage = field(default_factory=Coverage)
    uncovered: dict[str, list[str]] = field(default_factory=dict)


def _case(src: Source, i: int, problems: list[Problem], org_id: str) -> Case | None:
    data = src.data["tests"][i]
    path: tuple[str | int, ...] = ("tests", i)
    if not isinstance(data, dict):
        problems.append(Problem(src.at(path), "a test case must be a mapping"))
        return None
    for key in data:
        if key not in _CASE_KEYS:
            problems.append(Problem(src.at((*path, key)), f"unknown key '{key}'", "",
                                    "one of: " + ", ".join(sorted(_CASE_KEYS))))
    missing = [k for k in ("name", "user", "action", "module", "expect") if k not in data]
    if missing:
        problems.append(Problem(src.at(path), "test case lacks " + ", ".join(missing)))
        return None
    expect = data["expect"] if isinstance(data["expect"], dict) else {}
    for key in expect:
        if key not in _EXPECT_KEYS:
            problems.append(Problem(src.at((*path, "expect", key)), f"unknown expectation '{key}'",
                                    "", "one of: " + ", ".join(sorted(_EXPECT_KEYS))))
    rec = data.get("record") or {}
    for key in rec:
        if key not in _RECORD_KEYS:
            problems.append(Problem(src.at((*path, "record", key)), f"unknown record attribute "
                                    f"'{key}'", "", "one of: " + ", ".join(sorted(_RECORD_KEYS))))
    rec = {k: v for k, v in rec.items() if k in _RECORD_KEYS}
    if "total" in rec and rec["total"] is not None:
        rec["total"] = float(rec["total"])
    try:
        channel = Channel(data.get("channel", "crm"))
    except ValueError:
        problems.append(Problem(src.at((*path, "channel")), "invalid channel",
                                repr(data.get("channel")), "crm or direct"))
        return None
    request = CheckRequest(
        org_id=org_id, user=str(data["user"]), action=str(data["action"]),
        module=str(data["module"]), product=str(data.get("product", "")),
        record=Record(**{k: (str(v) if k not in ("total", "approval_level") else v)  # type: ignore[arg-type]
                         for k, v in rec.items()}),
        read_fields=tuple(data.get("read_fields") or ()),
        write_fields=tuple(data.get("write_fields") or ()),
        channel=channel, explain=True,
    )
    return Case(str(data["name"]), src.at(path), request, expect)


def load_suites(org_dir: Path, display_root: Path, org_id: str,
                policy: DirectoryPolicy | None = None
                ) -> list[tuple[DirectorySnapshot, list[Case]]]:
    """Read every `*.test.yaml` of an organization; raise PolicyError on bad files (and on
    a directory that names roles or products the organization's `policy` does not have)."""
    problems: list[Problem] = []
    suites = []
    directories: dict[Path, DirectoryFile | None] = {}  # suites share one: read it once
    for path in sorted((org_dir / "tests").glob("*.test.yaml")):
        try:
            src = load(path, path.relative_to(display_root).as_posix())
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(src.data, dict) or not isinstance(src.data.get("tests"), list):
            problems.append(Problem(src.at(()), "a test suite needs a 'tests' list"))
            continue
        dir_path = path.parent / str(src.data.get("directory", "directory.yaml"))
        if dir_path not in directories:
            try:
                directories[dir_path] = parse_directory(
                    load(dir_path, dir_path.relative_to(display_root).as_posix()), policy)
            except PolicyError as exc:
                problems.extend(exc.problems)
                directories[dir_path] = None
        dfile = directories[dir_path]
        if dfile is None:
            continue
        cases = [c for i in range(len(src.data["tests"]))
                 if (c := _case(src, i, problems, org_id)) is not None]
        suites.append((dfile.snapshot(), cases))
    if problems:
        raise PolicyError(problems)
    return suites


def _compare(decision: Decision | AuthzError, expect: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if isinstance(decision, AuthzError):
        if "error" in expect and str(expect["error"]) in str(decision):
            return out
        return [f"request error: {decision}"]
    if "error" in expect:
        out.append(f"expected error containing {expect['error']!r}, got a decision")
    got_decision = "allow" if decision.allowed else "deny"

    def check(key: str, got: object, want: object) -> None:
        if got != want:
            out.append(f"{key}: expected {want!r}, got {got!r}")

    if "decision" in expect:
        check("decision", got_decision, expect["decision"])
    if "reason" in expect:
        check("reason", decision.reason.value, expect["reason"])
    if "message_contains" in expect and str(expect["message_contains"]) not in decision.message:
        out.append(f"message: expected to contain {expect['message_contains']!r}, got "
                   f"{decision.message!r}")
    for key in ("hidden_fields", "read_only_fields"):
        if key in expect:
            check(key, sorted(getattr(decision, key)), sorted(expect[key] or []))
    if "blocked_until_approved" in expect:
        check("blocked_until_approved", decision.blocked_until_approved,
              expect["blocked_until_approved"])
    if "identity" in expect:
        check("identity", decision.identity.kind.value, expect["identity"])
    if "product" in expect:
        check("product", decision.product, expect["product"])
    if "approval" in expect:
        want = expect["approval"]
        got = decision.approval
        if want in (None, "none"):
            if got is not None:
                out.append(f"approval: expected none, got {got.outcome.value}")
        elif got is None:
            out.append(f"approval: expected {want}, got none")
        else:
            for k, v in want.items():
                value = getattr(got, k, None)
                value = getattr(value, "value", value)
                if isinstance(value, tuple):
                    value = sorted(value)
                    v = sorted(v)
                check(f"approval.{k}", value, v)
    return out


def _record_coverage(cov: Coverage, case: Case, decision: Decision | AuthzError) -> None:
    if isinstance(decision, AuthzError):
        return
    cov.roles.update(decision.identity.roles)
    for line in decision.matched_rules:
        if line.startswith("p, "):
            cov.grants.add(line)
        elif line.startswith("p3, "):
            parts = [p.strip() for p in line.split(",")]
            cov.flows.add((parts[2], parts[3], parts[4]))
    if decision.approval is not None and decision.approval.rule:
        cov.flows.add((decision.product, case.request.module, decision.approval.rule))
    product = decision.product
    named = {*case.request.read_fields, *case.request.write_fields,
             *(case.expect.get("hidden_fields") or ()),
             *(case.expect.get("read_only_fields") or ())}
    for f in named:
        cov.fields.add((product, case.request.module, f))


def _uncovered(org: Organization, index: OrgIndex, cov: Coverage) -> dict[str, list[str]]:
    roles = [r.key for r in org.roles if r.key not in cov.roles]
    per_role: dict[str, list[str]] = defaultdict(list)
    for grant in sorted(index.grant_lines(), key=lambda g: (g[1:4], g[0])):
        line = grant.line
        if line not in cov.grants:
            per_role[grant.role].append(line)
    fields = [f"{f.product}/{f.module}.{f.field} ({f.where.file}:{f.where.line})"
              for f in org.fields if (f.product, f.module, f.field) not in cov.fields]
    flows = [f"{a.product}/{a.module} rule {fl.id} ({fl.where.file}:{fl.where.line})"
             for a in org.approvals for fl in a.flows
             if (a.product, a.module, fl.id) not in cov.flows]
    total = sum(len(v) for v in per_role.values())
    return {"roles": roles, "field rules": fields, "approval rules": flows,
            "grants": [f"{role}: {len(lines)} grant(s) not exercised"
                       for role, lines in sorted(per_role.items())] if total else []}


def run(tree: PolicyTree, root: Path) -> list[OrgResult]:
    """Run every organization's suites against its freshly compiled policy."""
    results = []
    with tempfile.TemporaryDirectory(prefix="authz-policy-test-") as tmp:
        out = Path(tmp)
        files = compiler.render(tree)
        for rel, data in files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(data)
        for org in tree.orgs:
            org_dir = root / "orgs" / org.id
            if not (org_dir / "tests").is_dir():
                continue
            index = load_org(out, org.id)
            result = OrgResult(org.id, index=index)
            policy = DirectoryPolicy.from_manifest(index.manifest)
            for snap, cases in load_suites(org_dir, root, org.id, policy):
                for case in cases:
                    try:
                        decision: Decision | AuthzError = decide(case.request, index, snap)
                    except AuthzError as exc:
                        decision = exc
                    problems = _compare(decision, case.expect)
                    result.outcomes.append(Outcome(case, decision, problems))
                    _record_coverage(result.coverage, case, decision)
                    if problems:
                        result.failures.append(Failure(case, problems))
                    else:
                        result.passed += 1
            result.uncovered = _uncovered(org, index, result.coverage)
            results.append(result)
    return results
