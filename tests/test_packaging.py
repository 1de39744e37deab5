"""A non-editable install ships every package: pyproject lists them explicitly (the
server/ and client/ folders install under other names), so check the list."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"authz": "authz", "server": "authz_server", "client": "authz_client"}


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, name in INSTALLED_AS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert config["package-dir"] == {v: k for k, v in INSTALLED_AS.items()}
