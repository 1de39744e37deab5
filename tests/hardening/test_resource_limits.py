"""Resource limits, tried as an attacker would, against a real server process.

Many idle connections, many concurrent large requests, more calls than the server takes,
and many watch streams: each must meet a bound (the connection cap, RESOURCE_EXHAUSTED,
one shared poller), never file-descriptor exhaustion, unbounded memory or one store
read per stream, and the server must keep answering afterwards.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from authz.directory import CrmUser
from authz.store import open_store
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from tests.e2e.serverproc import AUTHZ, ServerProc, free_port, seed, server_env

ORG = "acme-eu"


def _start(work: Path, url: str, *flags: str, **env: str) -> ServerProc:
    port = free_port()
    log_path = work / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([AUTHZ, "serve", "--db", url, "--listen", f"127.0.0.1:{port}",
                                 "--log-level", "DEBUG", *flags], stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**server_env(), "AUTHZ_MIGRATION_AUTO_INTERVAL": "0", **env})
    server = ServerProc(f"127.0.0.1:{port}", port, proc, log_path)
    server.wait_serving()
    return server


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'authz.db'}"
    seed(url)
    return url


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_connections_are_capped_and_the_server_recovers(tmp_path: Path, db_url: str) -> None:
    """600 idle TCP connections against a cap of 50: the server's descriptors stay near
    the cap (each connection over it is closed at once), and it answers afterwards."""
    server = _start(tmp_path, db_url, "--max-connections", "50")
    try:
        before = _fds(server.proc.pid)
        attack: list[socket.socket] = []
        try:
            for _ in range(600):
                attack.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            time.sleep(1.0)  # let the server accept (and close) what it will
            held = _fds(server.proc.pid) - before
            assert held <= 50 + 20, f"{held} descriptors held for 600 idle connections"
            assert server.proc.poll() is None
        finally:
            for s in attack:
                s.close()
        deadline = time.monotonic() + 30
        while True:  # closed connections are noticed; the listener keeps accepting
            try:
                assert server.health() == 1
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, server.log()[-3000:]
                time.sleep(0.2)
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def _concurrently(server: ServerProc, rpc: str, request: object, n: int) -> list[grpc.StatusCode]:
    """The codes of `n` simultaneous calls, each on a connection of its own."""
    def send(_: int) -> grpc.StatusCode:
        with grpc.insecure_channel(server.address) as ch:
            try:
                getattr(pb_grpc.AuthzServiceStub(ch), rpc)(request, timeout=20)
            except grpc.RpcError as err:
                return err.code()
            return grpc.StatusCode.OK

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(send, range(n)))


def _big_batch(items: int, pad: int) -> pb.CheckBatchRequest:
    """A large CheckBatch that holds its bytes for a while (a revision no one reaches)."""
    return pb.CheckBatchRequest(requests=[
        pb.CheckRequest(org_id=ORG, user="u-sam", action="view", module="invoices",
                        min_revision=10**12, record=pb.Record(record_id="r" * pad))
        for _ in range(items)])


def test_request_bytes_in_progress_are_bounded(tmp_path: Path, db_url: str) -> None:
    """Concurrent ~600 KB requests against a 1 MB budget: the ones that do not fit are
    RESOURCE_EXHAUSTED; once they are done the budget is whole again."""
    server = _start(tmp_path, db_url, "--max-inflight-bytes", str(1_000_000))
    try:
        codes = _concurrently(server, "CheckBatch", _big_batch(600, 1000), 6)
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        # nothing leaked: the budget is whole again
        assert _concurrently(server, "CheckBatch", _big_batch(600, 1000), 1) == \
            [grpc.StatusCode.OK]
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def test_calls_over_the_limit_are_resource_exhausted(tmp_path: Path, db_url: str) -> None:
    server = _start(tmp_path, db_url, "--max-calls", "4")
    try:
        slow = pb.CheckRequest(org_id=ORG, user="u-sam", action="view", module="invoices",
                               min_revision=10**12)
        codes = _concurrently(server, "Check", slow, 12)
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
        assert set(codes) <= {grpc.StatusCode.FAILED_PRECONDITION,
                              grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert server.health() == 1
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def _reads(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    m = re.search(rb"^authz_migration_watch_reads_total (\S+)$", text, re.M)
    assert m, "no authz_migration_watch_reads_total in /metrics"
    return float(m.group(1))


def test_watch_streams_share_one_poller(tmp_path: Path) -> None:
    """40 clients watch one running job: the store is read once per tick for all of them,
    not once per stream per tick."""
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    n = 60
    with open_store(url) as store:
        store.import_directory(ORG, [CrmUser(f"w{i:03d}", f"w{i:03d}@acme.example", f"W {i}")
                                     for i in range(n)], [])
    metrics_port = free_port()
    server = _start(tmp_path, url, "--metrics-listen", f"127.0.0.1:{metrics_port}",
                    AUTHZ_MIGRATION_BATCH="5", AUTHZ_MIGRATION_PAUSE="0.1")
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = pb_grpc.AuthzServiceStub(ch)
            job = stub.Migrate(pb.MigrateRequest(
                org_id=ORG, caller="u-anna", mode=pb.MIGRATE_MODE_APPLY,
                crm_user_ids=[f"w{i:03d}" for i in range(n)], request_key="watch"), timeout=10)
            start = _reads(metrics_port)
            streams = 40

            def watch(_: int) -> pb.MigrationJob:
                with grpc.insecure_channel(server.address) as own:
                    return list(pb_grpc.AuthzServiceStub(own).WatchMigrationJob(
                        pb.GetMigrationJobRequest(org_id=ORG, job_id=job.job_id,
                                                  summary_only=True), timeout=60))[-1]

            with ThreadPoolExecutor(streams) as pool:
                finals = list(pool.map(watch, range(streams)))
            assert all(f.state == pb.MIGRATION_STATE_DONE and f.done == n for f in finals)
            reads = _reads(metrics_port) - start
            assert 0 < reads < streams, f"{reads} store reads for {streams} streams"
    finally:
        assert server.stop() == 0, server.log()[-3000:]




def _post(http: int, pad: int = 10, min_revision: int = 0) -> int:
    """An AuthZEN evaluation's HTTP status."""
    import json
    import urllib.error

    body = {"subject": {"type": "user", "id": "u-sam", "properties": {"org_id": ORG}},
            "action": {"name": "view"}, "resource": {"type": "invoices", "id": "r" * pad},
            "context": {"min_revision": min_revision}}
    req = urllib.request.Request(f"http://127.0.0.1:{http}/access/v1/evaluation",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_http_door_shares_the_request_bytes_budget(tmp_path: Path, db_url: str) -> None:
    """The AuthZEN port draws on the same budget: a body it cannot hold is 429, not read."""
    http = free_port()
    server = _start(tmp_path, db_url, "--http-listen", f"127.0.0.1:{http}",
                    "--max-inflight-bytes", "4000")
    try:
        assert _post(http, pad=5000) == 429
        assert _post(http) == 200  # nothing held after the refusal
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def test_http_calls_over_the_limit_are_429(tmp_path: Path, db_url: str) -> None:
    http = free_port()
    server = _start(tmp_path, db_url, "--http-listen", f"127.0.0.1:{http}", "--max-calls", "2")
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: _post(http, min_revision=10**12), range(8)))
        assert 429 in codes, codes
        assert _post(http) == 200  # the count went back down
    finally:
        assert server.stop() == 0, server.log()[-3000:]
