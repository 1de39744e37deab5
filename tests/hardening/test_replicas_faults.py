"""Several replicas on one PostgreSQL, and PostgreSQL restarted under load.

The restart test stops and starts the machine's real cluster (pg_ctlcluster): it runs
under `make faults` (AUTHZ_FAULTS=1), where a local cluster can be restarted, and always
starts it again. It takes ~20 s and would cut every other PostgreSQL user off meanwhile,
so `make test` leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz_client import AuthzClient, AuthzRpcError
from tests.conftest import fresh_postgres_schema
from tests.e2e.serverproc import DIRECTORY, run_authz, start_server
from tests.e2e.test_ops import _import_request

pytestmark = pytest.mark.postgres


def test_directory_change_through_one_replica_is_seen_by_the_other(postgres_url: str,
                                                                   tmp_path: Path) -> None:
    run_authz("db", "upgrade", "--db", postgres_url)
    a = start_server(tmp_path, postgres_url)
    b = start_server(tmp_path, postgres_url)
    try:
        with AuthzClient(a.address, deadline=5) as ca, AuthzClient(b.address, deadline=5) as cb:
            before = cb.check("acme-eu", "u-sam", "view", "invoices")
            # Nothing imported yet: an organization that has not migrated is legacy (§6).
            assert before.reason == "legacy_mode"
            rev = ca.import_directory(_import_request(DIRECTORY))
            after = cb.check("acme-eu", "u-sam", "view", "invoices", min_revision=rev)
            assert after.allowed and after.directory_revision >= rev
    finally:
        a.stop()
        b.stop()


def _cluster() -> list[str] | None:
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0 or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"] if versions else None


def _pg(action: str, cluster: list[str]) -> None:
    subprocess.run([*cluster, action], check=False, capture_output=True, timeout=60)


@pytest.fixture
def restart_url() -> Iterator[str]:
    """Like `postgres_url`: no pooled connection of the test's to lose in the restart."""
    with fresh_postgres_schema() as url:
        yield url


def test_postgres_restart_under_load(restart_url: str, tmp_path: Path) -> None:
    if os.environ.get("AUTHZ_FAULTS") != "1":
        pytest.skip("restarts PostgreSQL: run with `make faults`")
    cluster = _cluster()
    if cluster is None:
        pytest.skip("no local PostgreSQL cluster to restart")
    postgres_url = restart_url
    run_authz("db", "upgrade", "--db", postgres_url)
    run_authz("directory", "import", "--db", postgres_url, str(DIRECTORY))
    server = start_server(tmp_path, postgres_url, "--health-interval", "0.2")
    codes: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with AuthzClient(server.address, deadline=3, retries=0, on_unavailable="raise") as c:
            while not stop.is_set():
                try:
                    c.check("acme-eu", "u-sam", "view", "invoices", min_revision=1)
                    codes["OK"] += 1
                except AuthzRpcError as exc:
                    codes[exc.code.name] += 1
                time.sleep(0.002)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        _pg("stop", cluster)
        deadline = time.monotonic() + 20
        while server.health("") != 2:  # NOT_SERVING while PostgreSQL is down
            assert time.monotonic() < deadline, "health never turned NOT_SERVING"
            time.sleep(0.1)
        assert server.health("authz.store") == 2
        time.sleep(1.5)  # load goes on against the stopped database
    finally:
        _pg("start", cluster)
    deadline = time.monotonic() + 30
    while server.health("") != 1:  # recovers on its own, no restart
        assert time.monotonic() < deadline, "health never came back:\n" + server.log()[-3000:]
        time.sleep(0.2)
    ok_before = codes["OK"]
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    print(f"postgres restart under load: {dict(codes)}")
    assert codes["OK"] > ok_before  # answering again after recovery
    assert set(codes) <= {"OK", "UNAVAILABLE", "FAILED_PRECONDITION"}, codes
    assert '"internal_error"' not in server.log()
    assert server.stop() == 0
