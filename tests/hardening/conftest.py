"""Servers with security on: dev certificates, a callers file, mTLS, a token port.

The callers file here is narrower than `authz dev-certs` writes, so that every refusal
is reachable: `crm` may only check, only for acme-eu; `ops`' certificate is valid but not
listed (unauthenticated); `batch-job` holds a token for check and directory on acme-eu;
`admin` holds a token for everything.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authz_server.cli.devcerts import make_dev_certs
from authz_server.edge.auth import hash_token
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server


@dataclass
class Secure:
    """A running secure server and what a test needs to call it."""

    server: ServerProc
    certs: Path
    token_port: int
    tokens: dict[str, str]
    metrics_port: int


def write_callers(path: Path, tokens: dict[str, str]) -> None:
    path.write_text(f"""callers:
  - name: crm
    scopes: [check]
    orgs: [acme-eu]
    certs: [crm]
  - name: batch-job
    scopes: [check, directory]
    orgs: [acme-eu]
    tokens: ["{hash_token(tokens['batch-job'])}"]
  - name: admin
    scopes: ["*"]
    orgs: ["*"]
    tokens: ["{hash_token(tokens['admin'])}"]
""")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out)
    return out


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Secure]:
    work = tmp_path_factory.mktemp("secure")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    tokens = {"batch-job": secrets.token_urlsafe(24), "admin": secrets.token_urlsafe(24)}
    write_callers(work / "callers.yaml", tokens)
    token_port, metrics_port = free_port(), free_port()
    proc = start_server(work, url, "--tls-cert", str(certs / "server.pem"),
                        "--tls-key", str(certs / "server.key"),
                        "--tls-client-ca", str(certs / "ca.pem"),
                        "--callers", str(work / "callers.yaml"),
                        "--token-listen", f"127.0.0.1:{token_port}",
                        "--metrics-listen", f"127.0.0.1:{metrics_port}", wait=False)
    wait_logged_serving(proc)
    yield Secure(proc, certs, token_port, tokens, metrics_port)
    assert proc.stop() == 0, proc.log()


def wait_logged_serving(proc: ServerProc, timeout: float = 30) -> None:
    """Ready once the log says so (plaintext health probes cannot reach an mTLS port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.proc.returncode}:\n{proc.log()}")
        if '"event": "serving"' in proc.log():
            return
        time.sleep(0.05)
    proc.stop()
    raise TimeoutError(proc.log())
