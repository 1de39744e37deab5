"""Walking a located YAML source: typed getters that collect problems, not raise.

Validation reports every problem in a file at once, each with its location, so the
getters record what was wrong and return a harmless default for the caller to go on.
"""

from __future__ import annotations

import re
from typing import Any

from authz.policy.errors import Problem
from authz.policy.yamlsrc import Path_, Source


def one_of(values: Any) -> str:
    return "one of: " + ", ".join(str(v) for v in values)


class Reader:
    """Walks one source, collecting problems instead of stopping at the first."""

    def __init__(self, src: Source, problems: list[Problem]) -> None:
        self.src = src
        self.problems = problems

    def fail(self, path: Path_, message: str, found: Any = None, expected: str = "") -> None:
        shown = "" if found is None else repr(found)
        self.problems.append(Problem(self.src.at(path), message, shown, expected))

    def get(self, path: Path_) -> Any:
        value: Any = self.src.data
        for part in path:
            if isinstance(part, int):
                value = value[part]
            else:
                value = value.get(part) if isinstance(value, dict) else None
        return value

    def mapping(self, path: Path_, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        value = self.get(path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, "expected a mapping", type(value).__name__, "key: value pairs")
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.fail((*path, key), f"unknown key '{key}'", None, one_of(allowed))
        return value

    def seq(self, path: Path_) -> list[Any]:
        value = self.get(path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, "expected a list", type(value).__name__, "a YAML list")
            return []
        return value

    def string(self, path: Path_, required: bool = True, pattern: re.Pattern[str] | None = None,
               choices: tuple[str, ...] | None = None, default: str = "") -> str:
        value = self.get(path)
        if value is None:
            if required:
                self.fail(path, f"missing '{path[-1]}'")
            return default
        if not isinstance(value, str):
            self.fail(path, f"'{path[-1]}' must be text", value)
            return default
        if choices is not None and value not in choices:
            self.fail(path, f"invalid '{path[-1]}'", value, one_of(choices))
            return default
        if pattern is not None and not pattern.match(value):
            self.fail(path, f"invalid '{path[-1]}'", value, f"text matching {pattern.pattern}")
            return default
        return value

    def boolean(self, path: Path_, default: bool = False) -> bool:
        value = self.get(path)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, f"'{path[-1]}' must be true or false", value)
            return default
        return value

    def integer(self, path: Path_, default: int, minimum: int = 0) -> int:
        value = self.get(path)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(path, f"'{path[-1]}' must be a whole number >= {minimum}", value)
            return default
        return value

    def strings(self, path: Path_) -> list[str]:
        out = []
        for i, item in enumerate(self.seq(path)):
            if isinstance(item, str):
                out.append(item)
            else:
                self.fail((*path, i), "expected text", item)
        return out
