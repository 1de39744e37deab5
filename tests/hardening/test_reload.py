"""Policy hot reload under load: atomic swaps, a broken push keeps the last good revision,
SIGHUP; and no Check fails while it happens."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.engine.engine import DEFAULT_POLICY_DIR
from authz.policy.compiler import write_atomic
from authz_client import AuthzClient
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server
from tests.hardening.policyfiles import renamed

ORIGINAL = json.loads((DEFAULT_POLICY_DIR / "orgs/acme-eu.json").read_text())["revision"]


def publish(gen: Path, name: str, broken: bool = False) -> str:
    """Swap in the generated folder as `authz policy compile` does, compiled with acme-eu
    renamed (a new revision; or its manifest broken); returns acme-eu's new revision."""
    files = renamed(name)
    if broken:
        files["orgs/acme-eu.json"] = b'{"revision": "truncated'
    write_atomic(files, gen)
    return str(json.loads(files["orgs/acme-eu.json"])["revision"]) if not broken else ""


def policy_health(server: ServerProc) -> int:
    return server.health("authz.policy")


def wait_for(cond: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Load:
    """Threads asking Checks as fast as they can; every failure is kept."""

    def __init__(self, address: str, threads: int = 4) -> None:
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.revisions: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(address,)) for _ in range(threads)]

    def _run(self, address: str) -> None:
        with AuthzClient(address, deadline=5, retries=0, on_unavailable="raise") as c:
            while not self.stop.is_set():
                try:
                    r = c.check("acme-eu", "u-sam", "view", "invoices")
                    good = r.allowed and r.from_server
                    with self._lock:
                        self.revisions.add(r.policy_revision)
                        if good:
                            self.ok += 1
                        else:
                            self.failures.append(f"{r.reason}: {r.message}")
                except Exception as exc:
                    with self._lock:
                        self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()


@pytest.fixture
def reload_server(tmp_path: Path) -> Iterator[tuple[ServerProc, Path, int]]:
    gen = tmp_path / "generated"
    shutil.copytree(DEFAULT_POLICY_DIR, gen)
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    metrics = free_port()
    proc = start_server(tmp_path, url, "--policy-dir", str(gen), "--reload-interval", "0.1",
                        "--metrics-listen", f"127.0.0.1:{metrics}")
    yield proc, gen, metrics
    assert proc.stop() == 0


def test_reload_under_load_fails_no_check(reload_server: tuple[ServerProc, Path, int]) -> None:
    server, gen, metrics_port = reload_server
    with AuthzClient(server.address, deadline=5) as c, Load(server.address) as load:
        revs = []
        for i in range(4):  # four good pushes
            rev = publish(gen, f"Acme {i}")
            revs.append(rev)
            wait_for(lambda rev=rev: c.check("acme-eu", "u-sam", "view", "invoices").policy_revision
                     == rev)
            time.sleep(0.1)
        publish(gen, "Acme broken", broken=True)  # a broken push
        wait_for(lambda: policy_health(server) == 2)  # authz.policy NOT_SERVING
        time.sleep(0.3)
        last_good = c.check("acme-eu", "u-sam", "view", "invoices")
        assert last_good.allowed and last_good.policy_revision == revs[3]
        assert server.health("") == 1  # still serving decisions
        fixed = publish(gen, "Acme fixed")  # the fix
        wait_for(lambda: policy_health(server) == 1)
        assert c.check("acme-eu", "u-sam", "view", "invoices").policy_revision == fixed
        time.sleep(0.3)
    print(f"reload under load: {load.ok} Checks OK, {len(load.failures)} failed, "
          f"revisions seen {len(load.revisions)}")
    assert load.failures == []
    assert load.ok > 50
    assert load.revisions <= {ORIGINAL, *revs, fixed}
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    assert 'authz_policy_reload_failures_total{org_id="acme-eu"} 1.0' in text
    assert 'authz_policy_reload_failing{org_id="acme-eu"} 0.0' in text
    assert '"policy_reload_failed"' in server.log()


def test_sighup_reloads_when_polling_is_off(tmp_path: Path) -> None:
    gen = tmp_path / "generated"
    shutil.copytree(DEFAULT_POLICY_DIR, gen)
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    server = start_server(tmp_path, url, "--policy-dir", str(gen), "--reload-interval", "0")
    try:
        with AuthzClient(server.address, deadline=5) as c:
            rev = publish(gen, "Acme on SIGHUP")
            time.sleep(0.5)
            assert c.check("acme-eu", "u-sam", "view", "invoices").policy_revision == ORIGINAL
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: c.check("acme-eu", "u-sam", "view", "invoices").policy_revision
                     == rev)
    finally:
        assert server.stop() == 0
