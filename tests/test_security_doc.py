"""SECURITY.md's threat table must stay true to the tree: every link resolves (the file
exists; `file.py::test_name` names a test that file defines; `path::Name` a name that
file defines), and every threat names at least one test."""

from __future__ import annotations

import re

from tests.e2e.serverproc import REPO

DOC = REPO / "SECURITY.md"
DOTTED = re.compile(r"\w+(\.\w+)+")
LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+)(#[^)]*)?\)")


def _links(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in LINK.finditer(text)
            if not m.group(2).startswith(("http://", "https://", "mailto:"))]


def test_every_link_resolves() -> None:
    text = DOC.read_text()
    problems: list[str] = []
    for label, target in _links(text):
        path = REPO / target
        if not path.exists():
            problems.append(f"{label} -> {target}: no such file")
            continue
        if "::" in label and path.is_file():
            name = label.split("::", 1)[1].split()[0]
            if not re.search(rf"^\s*(async\s+)?def {re.escape(name)}\b", path.read_text(), re.M):
                problems.append(f"{label} -> {target}: {name} is not defined there")
        elif DOTTED.fullmatch(label) and not label.endswith(".py") and path.suffix == ".py":
            name = label.rsplit(".", 1)[1]  # security.scope_for, edge.Gate._admit
            if not re.search(rf"^\s*(async\s+)?(def|class) {re.escape(name)}\b|^{re.escape(name)}\s*[:=]",
                             path.read_text(), re.M):
                problems.append(f"{label} -> {target}: {name} is not defined there")
    assert not problems, "\n".join(problems)


def test_every_threat_names_code_and_a_test() -> None:
    rows = [line for line in DOC.read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| Threat", "| ---"))
            and line.count(" | ") >= 3]
    assert len(rows) >= 10
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        threat, code, tests = cells[0], cells[-2], cells[-1]
        assert _links(code), f"no code linked for: {threat}"
        assert any(t.startswith("tests/") for _, t in _links(tests)), f"no test for: {threat}"
