"""One version in one place (client/_version.py), matching the API baseline, and what a
distribution ships beside it (LICENSE, CHANGELOG)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from authz_client import __version__

REPO = Path(__file__).resolve().parents[1]


def _parts(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.lstrip("v").split("."))


def test_both_pyproject_files_read_the_one_version() -> None:
    for path in (REPO / "pyproject.toml", REPO / "client" / "pyproject.toml"):
        data = tomllib.loads(path.read_text())
        assert "version" not in data["project"] and "version" in data["project"]["dynamic"], path
        assert data["tool"]["setuptools"]["dynamic"]["version"] == {
            "attr": "authz_client._version.__version__"}, path
    assert metadata.version("authz") == __version__  # what the install recorded


def test_cli_reports_it() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "authz"), "--version"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == f"authz {__version__}"


def test_version_matches_the_api_baseline() -> None:
    """Same major as the newest released API image, and not older than it."""
    baselines = sorted(_parts(p.stem) for p in (REPO / "proto" / "releases").glob("v*.binpb"))
    assert baselines and _parts(__version__)[0] == baselines[-1][0]
    assert _parts(__version__) >= baselines[-1]


def test_changelog_names_this_version_first() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", text, re.M)
    assert releases and releases[0] == __version__
    assert "Keep a Changelog" in text


def test_license_is_apache_2() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
