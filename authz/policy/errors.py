"""Located policy errors: every problem names file, line and column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a source file (1-based line and column)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a source: where, what was found, what was expected."""

    where: Location
    message: str
    found: str = ""
    expected: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.found:
            text += f" (found {self.found}"
            text += f"; expected {self.expected})" if self.expected else ")"
        elif self.expected:
            text += f" (expected {self.expected})"
        return text


#: Files in the order others depend on them: a slip in an earlier one (a role misspelt
#: in roles.yaml) makes references in later ones fail too (fields, approvals, tests).
_RANK = {"release.yaml": 0, "predefined_roles.yaml": 0, "integration_user.yaml": 0,
         "organization.yaml": 1, "roles.yaml": 2, "fields.yaml": 3, "approvals.yaml": 4}


def _rank(file: str) -> int:
    if "/tests/" in file or file.endswith((".test.yaml", "directory.yaml")):
        return 5
    return _RANK.get(file.rsplit("/", 1)[-1], 4)


def _scope(file: str) -> str:
    """The folder whose files depend on each other: an organization's, or shared/."""
    parts = file.split("/")
    return "/".join(parts[:2]) if parts[0] == "orgs" else parts[0]


def _follows(p: Problem, broken: dict[str, int]) -> bool:
    """Whether a problem is likely a consequence of one in a file it depends on: an
    unknown reference, in a later file of the same organization (or after shared/)."""
    if not p.message.startswith("unknown"):
        return False
    rank = _rank(p.where.file)
    return any(r < rank for r in (broken.get(_scope(p.where.file), 99), broken.get("shared", 99)))


class PolicyError(Exception):
    """Sources that cannot be compiled; carries every problem found. Root causes come
    first, in dependency order (shared files, organization.yaml, roles.yaml, fields.yaml,
    approvals.yaml, tests), then line; `consequences` are the unknown references in files
    that depend on a broken one, reported as such rather than as twelve more errors."""

    def __init__(self, problems: list[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: (_rank(p.where.file), p.where.file,
                                                  p.where.line, p.where.column, p.message))
        broken: dict[str, int] = {}
        for p in ordered:
            scope = _scope(p.where.file)
            broken[scope] = min(broken.get(scope, 99), _rank(p.where.file))
        self.roots = [p for p in ordered if not _follows(p, broken)]
        self.consequences = [p for p in ordered if _follows(p, broken)]
        self.problems = self.roots + self.consequences
        super().__init__("\n".join(str(p) for p in self.problems))
