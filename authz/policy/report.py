"""`authz policy test` results for CI: JUnit XML (one testsuite per organization, one
testcase per case, its file:line) and JSON (the same, plus what no case exercised)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from authz.decision import Decision
from authz.policy.testing import OrgResult, Outcome


def _outcome(o: Outcome, root: Path, explain: list[str] | None) -> dict[str, Any]:
    d = o.decision
    out: dict[str, Any] = {"name": o.case.name, "file": str(root / o.case.where.file),
                           "line": o.case.where.line, "passed": not o.problems,
                           "problems": o.problems}
    if isinstance(d, Decision):
        out["decision"] = "allow" if d.allowed else "deny"
        out["reason"] = d.reason.value
        out["message"] = d.message
    else:
        out["error"] = str(d)
    if explain is not None:
        out["explain"] = explain
    return out


def as_json(results: list[OrgResult], root: Path,
            explain: dict[int, list[str]] | None = None) -> str:
    """Every case's result, per organization, with totals (`explain`: by id(outcome))."""
    orgs = [{"org_id": r.org_id, "passed": r.passed, "failed": len(r.failures),
             "cases": [_outcome(o, root, explain.get(id(o)) if explain else None)
                       for o in r.outcomes],
             "not_exercised": {k: v for k, v in r.uncovered.items() if v}}
            for r in results]
    return json.dumps({"passed": sum(r.passed for r in results),
                       "failed": sum(len(r.failures) for r in results),
                       "organizations": orgs}, indent=2) + "\n"


def as_junit(results: list[OrgResult], root: Path) -> bytes:
    """JUnit XML as CI servers read it (GitLab, Jenkins, GitHub test reporters)."""
    suites = ET.Element("testsuites", name="authz policy test",
                        tests=str(sum(len(r.outcomes) for r in results)),
                        failures=str(sum(len(r.failures) for r in results)))
    for r in results:
        suite = ET.SubElement(suites, "testsuite", name=r.org_id, tests=str(len(r.outcomes)),
                              failures=str(len(r.failures)), errors="0", skipped="0")
        for o in r.outcomes:
            case = ET.SubElement(suite, "testcase", name=o.case.name, classname=r.org_id,
                                 file=str(root / o.case.where.file), line=str(o.case.where.line))
            if o.problems:
                failure = ET.SubElement(case, "failure", message=o.problems[0],
                                        type="expectation")
                failure.text = f"{root / str(o.case.where)}: {o.case.name}\n" + "\n".join(
                    o.problems)
    ET.indent(suites)
    data: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
