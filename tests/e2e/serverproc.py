"""Start a real `authz serve` process on a free port, seeded like `make serve`.

Shared by the e2e and client suites: tests talk to the same binary operators run, over
a real socket, with a real (SQLite) store; nothing of ours is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AUTHZ = str(BIN / "authz")
DIRECTORY = REPO / "authz/policies/orgs/acme-eu/tests/directory.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_authz(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTHZ, *args], capture_output=True, text=True, check=check,
                          timeout=60, env=server_env())


def server_env() -> dict[str, str]:
    """The test's environment without AUTHZ_* settings that would leak into the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}


def seed(db_url: str) -> None:
    """`make serve`'s first two steps: schema, then the example directory."""
    run_authz("db", "upgrade", "--db", db_url)
    run_authz("directory", "import", "--db", db_url, str(DIRECTORY))


@dataclass
class ServerProc:
    """A running server: address, process, and where its JSON log goes."""

    address: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    http_url: str = ""  # the AuthZEN HTTP API's base URL, when started with http=True

    def log(self) -> str:
        return self.log_path.read_text()

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
            status: int = resp.status
            return status

    def wait_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"authz serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"authz serve not SERVING after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for the drain; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_server(workdir: Path, db_url: str, *extra: str, port: int | None = None,
                 wait: bool = True, http: bool = False,
                 env: dict[str, str] | None = None) -> ServerProc:
    """Start `authz serve` (the store must be seeded already); `http` turns the AuthZEN
    HTTP API on, on a free port of its own; `env` adds settings."""
    port = port or free_port()
    http_port = free_port() if http else 0
    if http:
        extra = (*extra, "--http-listen", f"127.0.0.1:{http_port}")
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [AUTHZ, "serve", "--db", db_url, "--listen", f"127.0.0.1:{port}",
             "--log-level", "DEBUG", *extra],
            stdout=log, stderr=subprocess.STDOUT, env={**server_env(), **(env or {})})
    server = ServerProc(f"127.0.0.1:{port}", port, proc, log_path,
                        f"http://127.0.0.1:{http_port}" if http else "")
    if wait:
        try:
            server.wait_serving()
        except BaseException:
            server.stop()
            raise
    return server
