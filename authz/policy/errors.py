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


class PolicyError(Exception):
    """Sources that cannot be compiled; carries every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.where.file, p.where.line, p.where.column, p.message)
        )
        super().__init__("\n".join(str(p) for p in self.problems))
