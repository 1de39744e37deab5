"""Process lifecycle, tried as an unlucky operator (and an attacker) would, on real processes.

- a second `authz serve` on a port already in use must refuse to start, not silently
  split the traffic (gRPC turns SO_REUSEPORT on by default);
- `--workers` processes must exit when their parent is killed with SIGKILL;
- SIGTERM must finish within the grace period even while the store is wedged;
- a client certificate whose names map to two callers is refused;
- a metrics listener off loopback needs TLS or --allow-insecure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from authz_client import AuthzClient, AuthzRpcError
from authz_server.cli.devcerts import _leaf
from tests.conftest import fresh_postgres_schema
from tests.e2e.serverproc import AUTHZ, ServerProc, free_port, seed, server_env, start_server
from tests.hardening.conftest import wait_logged_serving


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'authz.db'}"
    seed(url)
    return url


def _exits(proc: subprocess.Popen[bytes], log: Path, within: float = 30) -> int:
    """The exit code; fails if the process reports serving or outlives `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        if '"event": "serving"' in log.read_text():
            proc.kill()
            proc.wait()
            raise AssertionError("a second server started on a port in use:\n" + log.read_text())
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("still running:\n" + log.read_text())


def _serve(tmp: Path, db_url: str, port: int, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / f"serve-{port}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([AUTHZ, "serve", "--db", db_url, "--listen", f"127.0.0.1:{port}",
                                 *extra], stdout=out, stderr=subprocess.STDOUT, env=server_env())
    return proc, log


def test_second_server_on_a_port_in_use_is_refused(tmp_path: Path, db_url: str) -> None:
    first = start_server(tmp_path, db_url)
    try:
        proc, log = _serve(tmp_path, db_url, first.port)
        assert _exits(proc, log) != 0
        assert f"127.0.0.1:{first.port}" in log.read_text()
        assert first.health() == 1  # the first one still serves, alone
    finally:
        assert first.stop() == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not serving
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _worker_pids(log: Path, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"event": "workers"' in line:
                return [int(p) for p in json.loads(line)["pids"]]
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def test_workers_share_their_port_but_no_one_else_does(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    parent, log = _serve(tmp_path, db_url, port, "--workers", "2")
    pids = _worker_pids(log)
    try:
        ServerProc(f"127.0.0.1:{port}", port, parent, log).wait_serving()
        deadline = time.monotonic() + 30
        while log.read_text().count('"event": "serving"') < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text().count('"event": "serving"') == 2, log.read_text()
        other, other_log = _serve(tmp_path, db_url, port, "--workers", "2")
        assert _exits(other, other_log) != 0
        single, single_log = _serve(tmp_path, db_url, port)
        assert _exits(single, single_log) != 0
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.wait(30)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_signals_while_workers_start_stop_or_reload_them_cleanly(tmp_path: Path,
                                                                    db_url: str) -> None:
    """SIGHUP (a reload) sent while the spawned workers still start must not kill them, and
    SIGTERM then is a clean stop (exit 0), not a worker failure (exit 15 before)."""
    port = free_port()
    parent, log = _serve(tmp_path, db_url, port, "--workers", "2", "--grace", "1")
    pids = _worker_pids(log)  # logged as the workers are spawned, long before they serve
    try:
        parent.send_signal(signal.SIGHUP)
        ServerProc(f"127.0.0.1:{port}", port, parent, log).wait_serving(timeout=120)
        assert '"worker_died"' not in log.read_text(), log.read_text()
        assert all(_alive(p) for p in pids), log.read_text()
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 0, log.read_text()
    second, second_log = _serve(tmp_path, db_url, port, "--workers", "2", "--grace", "1")
    pids = _worker_pids(second_log)
    try:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, second_log.read_text()
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    parent, log = _serve(tmp_path, db_url, port, "--workers", "2", "--grace", "1")
    pids = _worker_pids(log)
    try:
        ServerProc(f"127.0.0.1:{port}", port, parent, log).wait_serving()
        parent.kill()  # SIGKILL: the parent cannot relay anything
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "orphaned workers kept serving:\n" + log.read_text()
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_parents_metrics_folder_is_removed_by_the_next_start(tmp_path: Path,
                                                                      db_url: str) -> None:
    """A parent killed with SIGKILL cannot remove its workers' metrics folder; the next
    start removes every folder no live process owns, and only those."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**server_env(), "TMPDIR": str(tmp)}
    me = os.getpid()
    with open(f"/proc/{me}/stat", "rb") as f:
        started = f.read().rsplit(b")", 1)[1].split()[19].decode()
    live = tmp / f"authz-metrics-{me}-{started}-keep"  # a run that goes on (this process)
    reused = tmp / f"authz-metrics-{me}-1-gone"  # this pid, another process's start: gone
    for folder in (live, reused):
        folder.mkdir()
    port = free_port()

    def serve(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / name
        with log.open("wb") as out:
            proc = subprocess.Popen([AUTHZ, "serve", "--db", db_url, "--listen",
                                     f"127.0.0.1:{port}", "--workers", "2", "--grace", "1"],
                                    stdout=out, stderr=subprocess.STDOUT, env=env)
        return proc, log

    parent, log = serve("first.log")
    pids = _worker_pids(log, timeout=120)
    try:
        # Two spawned workers start slowly on a loaded machine: bounded waits, not timings.
        ServerProc(f"127.0.0.1:{port}", port, parent, log).wait_serving(timeout=120)
        (left,) = set(tmp.glob("authz-metrics-*")) - {live, reused}
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 120
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), log.read_text()  # the port is free again
        assert left.is_dir()  # what SIGKILL leaves behind
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    again, again_log = serve("second.log")
    try:
        ServerProc(f"127.0.0.1:{port}", port, again, again_log).wait_serving(timeout=120)
        deadline = time.monotonic() + 120  # both workers up: a SIGTERM mid-start exits 15
        while again_log.read_text().count('"event": "serving"') < 2 and (
                time.monotonic() < deadline):
            time.sleep(0.1)
        assert not left.exists() and not reused.exists(), again_log.read_text()
        assert live.is_dir()
        (current,) = set(tmp.glob("authz-metrics-*")) - {live}
        assert f"authz-metrics-{again.pid}-" in current.name
        assert '"metrics_dirs_removed"' in again_log.read_text()
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0, again_log.read_text()
    assert set(tmp.glob("authz-metrics-*")) == {live}  # a clean stop removes its own


def test_sigterm_finishes_within_grace_while_the_store_is_wedged(tmp_path: Path) -> None:
    """Every worker thread blocked on a table lock: SIGTERM must still end the process."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    with fresh_postgres_schema() as url:
        seed(url)
        server = start_server(tmp_path, url, "--threads", "2", "--grace", "1")
        locker = sa.create_engine(url, poolclass=NullPool)
        conn = locker.connect()
        try:
            tx = conn.begin()
            conn.execute(sa.text("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE"))
            with grpc.insecure_channel(server.address) as ch:
                stub = pb_grpc.AuthzServiceStub(ch)
                # Each needs the database (a revision newer than the cache): all wedge.
                calls = [stub.Check.future(pb.CheckRequest(
                    org_id="acme-eu", user="u-sam", action="view", module="invoices",
                    min_revision=10**9), timeout=120) for _ in range(6)]
                time.sleep(1.0)  # let them reach the lock
                server.proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                try:
                    code = server.proc.wait(timeout=20)  # grace 1 s; generous for a slow box
                    print(f"SIGTERM with a wedged store: exited in "  # shown, not asserted
                          f"{time.monotonic() - t0:.2f} s (grace 1 s)")
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait()
                    raise AssertionError("SIGTERM did not finish with a wedged store:\n"
                                         + server.log()[-3000:]) from None
                for c in calls:
                    c.cancel()
            assert code == 0, server.log()[-3000:]
        finally:
            tx.rollback()
            conn.close()
            locker.dispose()
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()


def test_certificate_naming_two_callers_is_refused(tmp_path: Path, db_url: str,
                                                   certs: Path) -> None:
    """CN=crm, SAN=DNS:ops: two callers' names in one certificate; which one is it?"""
    _leaf(certs, "twofaced", "crm", "subjectAltName=DNS:ops\nextendedKeyUsage=clientAuth\n"
                                    "basicConstraints=CA:FALSE\n")
    callers = tmp_path / "callers.yaml"
    callers.write_text("callers:\n"
                       "  - {name: crm, scopes: [check], orgs: [acme-eu], certs: [crm]}\n"
                       "  - {name: ops, scopes: ['*'], orgs: ['*'], certs: [ops]}\n")
    server = start_server(tmp_path, db_url, "--tls-cert", str(certs / "server.pem"),
                          "--tls-key", str(certs / "server.key"),
                          "--tls-client-ca", str(certs / "ca.pem"), "--callers", str(callers),
                          wait=False)
    try:
        wait_logged_serving(server)

        def client(name: str) -> AuthzClient:
            return AuthzClient(f"localhost:{server.port}", ca=certs / "ca.pem",
                               cert=certs / f"{name}.pem", key=certs / f"{name}.key",
                               deadline=5, retries=0, on_unavailable="raise")

        with client("crm") as c:  # CN and SAN both "crm": one caller
            assert c.check("acme-eu", "u-sam", "view", "invoices").allowed
        with client("twofaced") as c, pytest.raises(AuthzRpcError) as err:
            c.check("acme-eu", "u-sam", "view", "invoices")
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "crm" in err.value.message and "ops" in err.value.message
    finally:
        assert server.stop() == 0, server.log()


def test_metrics_off_loopback_need_tls_or_allow_insecure(tmp_path: Path, db_url: str,
                                                         certs: Path) -> None:
    port, metrics = free_port(), free_port()
    proc, log = _serve(tmp_path, db_url, port, "--metrics-listen", f"0.0.0.0:{metrics}")
    assert _exits(proc, log) == 2
    assert "metrics_listen" in log.read_text() and "allow_insecure" in log.read_text()
    # With TLS configured, /metrics is served over HTTPS with the server's certificate.
    callers = tmp_path / "callers.yaml"
    callers.write_text("callers:\n  - {name: crm, scopes: [check], orgs: ['*'], certs: [crm]}\n")
    server = start_server(tmp_path, db_url, "--tls-cert", str(certs / "server.pem"),
                          "--tls-key", str(certs / "server.key"), "--callers", str(callers),
                          "--metrics-listen", f"0.0.0.0:{metrics}", wait=False)
    try:
        wait_logged_serving(server)
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with urllib.request.urlopen(f"https://localhost:{metrics}/metrics", context=ctx,
                                    timeout=10) as resp:
            assert b"authz_rpcs_total" in resp.read()
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from authz_server.cli.devcerts import make_dev_certs

    out = tmp_path_factory.mktemp("lifecycle-certs")
    make_dev_certs(out)
    yield out
