"""A writable copy of the repository's policy root for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2] / "authz" / "policies"


@pytest.fixture
def policy_root(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    shutil.copytree(REPO_ROOT, root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    """Replace text in a source file; the test fails if the text is not there."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
