"""One real server for the whole e2e session (starting one costs about a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from authz.v1 import authz_pb2_grpc
from authz_client import AuthzClient
from tests.e2e.serverproc import ServerProc, seed, start_server


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
    seed(url)
    return url


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[ServerProc]:
    workdir: Path = tmp_path_factory.mktemp("server")
    proc = start_server(workdir, db_url, "--grace", "5", http=True)
    yield proc
    code = proc.stop()
    assert code == 0, proc.log()


@pytest.fixture(scope="session")
def client(server: ServerProc) -> Iterator[AuthzClient]:
    with AuthzClient(server.address, deadline=5) as c:
        yield c


@pytest.fixture(scope="session")
def stub(server: ServerProc) -> Iterator[authz_pb2_grpc.AuthzServiceStub]:
    """The generated stub, for what the SDK deliberately does not let one send."""
    with grpc.insecure_channel(server.address) as ch:
        yield authz_pb2_grpc.AuthzServiceStub(ch)
