"""Command-line frictions a newcomer met (issue 14 item 7), each against a real server:
a closed pipe ends quietly, and a TLS/plaintext mismatch is named as such."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz_server.cli.devcerts import make_dev_certs
from tests.e2e.serverproc import AUTHZ, ServerProc, free_port, seed, server_env, start_server

QUESTION = ("--org", "acme-eu", "--user", "u-sam", "--action", "view", "--module", "invoices")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out)
    return out


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[ServerProc]:
    work = tmp_path_factory.mktemp("tls")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    srv = start_server(work, url, "--tls-cert", str(certs / "server.pem"),
                       "--tls-key", str(certs / "server.key"), wait=False)
    while '"event": "serving"' not in srv.log():
        assert srv.proc.poll() is None, srv.log()
        subprocess.run(["sleep", "0.1"], check=True)
    yield srv
    assert srv.stop() == 0, srv.log()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTHZ, "check", *args], capture_output=True, text=True, timeout=60,
                          env=server_env())


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_a_closed_pipe_ends_quietly(server: ServerProc, reader: str) -> None:
    """`true` exits before the answer is printed: the write meets a closed pipe."""
    done = subprocess.run(["bash", "-c", f'"$0" check --server {server.address} --json '
                           f'--explain {" ".join(QUESTION)} | {reader}; echo "rc=${{PIPESTATUS[0]}}"',
                           AUTHZ], capture_output=True, text=True, timeout=60, env=server_env())
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] in ("rc=0", "rc=141")


def test_plaintext_call_to_a_tls_port_says_so(tls_server: ServerProc, certs: Path) -> None:
    done = check("--server", tls_server.address, "--deadline", "1", *QUESTION)
    assert done.returncode == 3
    assert "speaks TLS" in done.stderr and "--ca" in done.stderr
    assert "no authz server answered" not in done.stderr
    ok = check("--server", f"localhost:{tls_server.port}", "--ca", str(certs / "ca.pem"),
               *QUESTION)
    assert ok.returncode == 0, ok.stderr


def test_tls_call_to_a_plaintext_port_says_so(server: ServerProc, certs: Path) -> None:
    done = check("--server", server.address, "--ca", str(certs / "ca.pem"), "--deadline", "1",
                 *QUESTION)
    assert done.returncode == 3 and "does not speak TLS" in done.stderr


def test_nothing_listening_is_still_no_server() -> None:
    done = check("--server", f"127.0.0.1:{free_port()}", "--deadline", "0.5", *QUESTION)
    assert done.returncode == 3 and "no authz server answered" in done.stderr


def test_audit_query_takes_an_email_as_the_rpc_does(server: ServerProc, db_url: str) -> None:
    decided = check("--server", server.address, "--json", "--record-id", "inv-email-q",
                    *QUESTION)
    assert decided.returncode == 0, decided.stderr
    by_id = by_email = ""
    for _ in range(50):  # batched audit: written within the flush interval
        args = ("audit", "query", "--db", db_url, "--org", "acme-eu", "--record", "inv-email-q",
                "--json", "--user")
        by_id = subprocess.run([AUTHZ, *args, "u-sam"], capture_output=True, text=True,
                               timeout=60, env=server_env()).stdout
        by_email = subprocess.run([AUTHZ, *args, "Sam@Acme.example"], capture_output=True,
                                  text=True, timeout=60, env=server_env()).stdout
        if by_id:
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert by_id and by_email == by_id


def test_audit_trim_is_a_dry_run_unless_applied(server: ServerProc, db_url: str) -> None:
    """Against the live session store: the dry run must delete nothing (--apply is tested
    in tests/store/test_audit.py on a store of its own)."""
    def count() -> int:
        out = subprocess.run([AUTHZ, "audit", "export", "--db", db_url, "--org", "acme-eu"],
                             capture_output=True, text=True, timeout=60, env=server_env())
        return len(out.stdout.splitlines())

    check("--server", server.address, *QUESTION)
    before = count()
    done = subprocess.run([AUTHZ, "audit", "trim", "--db", db_url, "--older-than", "0"],
                          capture_output=True, text=True, timeout=60, env=server_env())
    assert done.returncode == 0, done.stderr
    assert "would trim" in done.stdout and "dry run" in done.stdout
    assert count() >= before > 0
