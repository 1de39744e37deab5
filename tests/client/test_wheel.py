"""The client as its own distribution: build the `authz-client` wheel from client/,
install it ALONE into a fresh virtualenv, and call a real server with it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz_client import __version__
from tests.e2e.serverproc import ServerProc, seed, start_server

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("wheel_probe.py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy, so the build leaves nothing in the source tree."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "client"
    shutil.copytree(REPO / "client", src, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(work / "dist"), str(src)], check=True, timeout=300)
    (built,) = (work / "dist").glob("authz_client-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   timeout=600)
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
    seed(url)
    srv = start_server(tmp_path_factory.mktemp("server"), url)
    yield srv
    assert srv.stop() == 0, srv.log()


def test_wheel_carries_the_stubs_and_nothing_of_the_server(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith(f"authz_client-{__version__}-")
    assert "authz_client/v1/authz_pb2.py" in names and "authz_client/v1/authz_pb2_grpc.pyi" in names
    assert "authz_client/py.typed" in names
    assert not [n for n in names if n.startswith(("authz/", "authz_server/"))]
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = sorted(line.split(":", 1)[1].split(">")[0].strip()
                      for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                      if line.startswith("Requires-Dist:"))
    assert requires == ["googleapis-common-protos", "grpcio", "protobuf"]


def test_wheel_carries_the_project_license(wheel: Path) -> None:
    """A wheel installed without the repository still says under which terms it ships."""
    archive = zipfile.ZipFile(wheel)
    (license_file,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert archive.read(license_file) == (REPO / "LICENSE").read_bytes()
    meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in archive.read(meta).decode()


def test_installed_alone_it_calls_a_real_server(fresh_python: Path, server: ServerProc) -> None:
    installed = subprocess.run([str(fresh_python), "-m", "pip", "list", "--format=json"],
                               capture_output=True, text=True, check=True, timeout=120)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert not names & {"sqlalchemy", "pycasbin", "casbin", "alembic", "prometheus-client",
                        "grpcio-status", "pyyaml", "authz"}, names
    assert {"authz-client", "grpcio", "protobuf", "googleapis-common-protos"} <= names
    done = subprocess.run([str(fresh_python), str(PROBE), server.address], capture_output=True,
                          text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["version"] == __version__ and seen["absent"] == []
    assert seen["deadline"] > 2.0  # longer than the server's min_revision wait
    assert seen["check"] == [True, "granted", "b-sam"]
    assert seen["check_many"] == ["CheckResult", "CheckError"]
    assert seen["attribute"] == ["unified", "b-sam", True]
    assert seen["list_filter"][1:] == [True, True]
    assert seen["import_directory"] is True and seen["migrate"] == [True, True]
    assert seen["error"] == ["INVALID_ARGUMENT", ["module"]]
    assert seen["async"] == [True, 1]  # 20 concurrent checks left as one CheckBatch
