"""The server as distributed (issue 14 item 4): the wheel ships no example organizations,
and an installed server with no policy folder configured refuses to start, saying how to
give it one, instead of serving demo organizations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from authz_client import __version__

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of what the wheel is made of (the source tree stays clean)."""
    work = tmp_path_factory.mktemp("server-wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("authz", "server", "client"):
        shutil.copytree(REPO / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(work / "dist"), str(src)], check=True, timeout=600)
    (built,) = (work / "dist").glob("authz-*.whl")
    return built


def test_wheel_ships_no_example_organizations(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith(f"authz-{__version__}-")
    assert not [n for n in names if n.startswith(("authz/policies/orgs/",
                                                  "authz/policies/generated/"))]
    assert "authz/policies/shared/predefined_roles.yaml" in names  # the product's, not a demo
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert f"Version: {__version__}" in text and "License-Expression: Apache-2.0" in text


def test_installed_server_needs_a_policy_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    program = ("import sys; sys.path.insert(0, sys.argv[1]); import authz; "
               "assert authz.__file__.startswith(sys.argv[1]), authz.__file__; "
               "from authz_server.cli import main; "
               "sys.exit(main(['serve', '--db', sys.argv[2], '--listen', '127.0.0.1:0']))")
    done = subprocess.run([sys.executable, "-c", program, str(target),
                           f"sqlite:///{tmp_path / 'authz.db'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no compiled policy" in done.stderr and "--policy-dir" in done.stderr
    assert not (tmp_path / "authz.db").exists()  # refused before touching anything
