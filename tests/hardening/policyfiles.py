"""Compiled policy folders for tests: real compiles of variants of the example policy,
and the ways a compiled file goes wrong on disk (cut short, reordered, swapped)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from authz.engine.engine import DEFAULT_POLICY_DIR
from authz.policy.compiler import render, write_atomic
from authz.policy.model import Organization
from authz.policy.sources import read_tree

POLICIES = DEFAULT_POLICY_DIR.parent


def variant(change: Callable[[Organization], Organization], org_id: str = "acme-eu"
            ) -> dict[str, bytes]:
    """Every generated file, compiled from the example sources with one organization
    changed (a real compile: a new revision, a new seal)."""
    tree = read_tree(POLICIES)
    orgs = tuple(change(o) if o.id == org_id else o for o in tree.orgs)
    return render(dataclasses.replace(tree, orgs=orgs))


def renamed(name: str, org_id: str = "acme-eu") -> dict[str, bytes]:
    """A variant whose only change is the organization's display name (a new revision)."""
    return variant(lambda o: dataclasses.replace(o, name=name), org_id)


def publish(gen: Path, files: dict[str, bytes]) -> None:
    """Swap the files in as `authz policy compile` does."""
    write_atomic(files, gen)


def truncate(path: Path, keep: float = 0.5) -> None:
    """An interrupted copy: the first part of the file only, in place."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def reorder(path: Path) -> None:
    """The same rows in another order (an in-place save by a tool that sorts)."""
    lines = path.read_text().splitlines(keepends=True)
    head = [ln for ln in lines if ln.startswith("#")]
    rows = [ln for ln in lines if not ln.startswith("#")]
    path.write_text("".join(head + rows[::-1]))


def revision_of(gen: Path, org_id: str = "acme-eu") -> str:
    import json

    rev: str = json.loads((gen / "orgs" / f"{org_id}.json").read_text())["revision"]
    return rev
