"""YAML reading that remembers where every value came from.

Errors must point at file, line and column, so sources are composed into nodes and
converted by hand, recording the mark of every mapping key, sequence item and value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from authz.policy.errors import Location, PolicyError, Problem

Path_ = tuple[str | int, ...]


@dataclass(slots=True)
class Source:
    """A parsed YAML file: plain Python data plus the location of each path in it."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path_) -> Location:
        """Location of the value at `path`, or of its nearest located parent."""
        p = path
        while p not in self.marks and p:
            p = p[:-1]
        line, col = self.marks.get(p, (0, 0))
        return Location(self.file, line, col)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# libyaml's parser is ~10x faster and keeps marks; fall back to pure Python without it.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> Any:
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _convert(node: yaml.Node, path: Path_, marks: dict[Path_, tuple[int, int]], file: str) -> Any:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            if key in out:
                where = Location(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                raise PolicyError([Problem(where, f"duplicate key '{key}'")])
            out[key] = _convert(value_node, (*path, key), marks, file)
            marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(n, (*path, i), marks, file) for i, n in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def load(path: Path, display: str | None = None) -> Source:
    """Read a YAML file; a syntax error becomes a located PolicyError."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([Problem(Location(name), f"cannot read file: {exc.strerror}")]) from exc
    return parse(text, name)


def parse(text: str, name: str) -> Source:
    """Parse YAML text read from `name`; a syntax error becomes a located PolicyError."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        raise PolicyError([Problem(where, f"malformed YAML: {exc.problem}")]) from exc
    marks: dict[Path_, tuple[int, int]] = {}
    data = {} if node is None else _convert(node, (), marks, name)
    return Source(name, data, marks)
