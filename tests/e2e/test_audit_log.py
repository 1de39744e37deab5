"""The audit log pipeline through real servers: a batched server killed with SIGKILL
loses no answered decision (the next start ships its log, nothing twice), and `--workers`
processes each keep their own log segment while one hash chain per organization holds."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from authz.store import open_store
from authz.store.audit import AuditStore
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import ServerProc, run_authz, seed, start_server

ORG = "acme-eu"
USERS = ("u-sam", "u-paul", "u-ivy", "u-anna")


def _config(tmp_path: Path, pipeline: str, ship_interval: float) -> Path:
    config = tmp_path / "authz.toml"
    config.write_text(f'audit_pipeline = "{pipeline}"\naudit_flush_interval = {ship_interval}\n'
                      f'audit_ship_interval = {ship_interval}\n')
    return config


def _hammer(server: ServerProc, enough: int) -> tuple[list[str], threading.Event]:
    """Checks from several threads until the server goes; `acked` fills as they answer."""
    acked: list[str] = []
    lock = threading.Lock()
    ready = threading.Event()

    def run(user: str) -> None:
        with grpc.insecure_channel(server.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            req = pb.CheckRequest(org_id=ORG, user=user, action="view", module="invoices")
            while True:
                try:
                    d = stub.Check(req, timeout=5)
                except grpc.RpcError:
                    return
                with lock:
                    acked.append(d.decision_id)
                    if len(acked) >= enough:
                        ready.set()

    for u in USERS:
        threading.Thread(target=run, args=(u,), daemon=True).start()
    return acked, ready


def _trail_ids(url: str) -> list[str]:
    with open_store(url) as store:
        trail = AuditStore(store.engine)
        assert trail.verify(ORG).ok
        return [e.decision_id for e in trail.entries(ORG)]


@pytest.mark.parametrize("pipeline", ["log"])
def test_batched_sigkill_loses_no_answered_decision(tmp_path: Path, pipeline: str) -> None:
    """Batched mode answers before the store has the entry; on the log pipeline a killed
    process still loses none of them (the queue pipeline loses its queue: see README)."""
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    config = _config(tmp_path, pipeline, ship_interval=5.0)  # most entries unshipped at the kill
    server = start_server(tmp_path, url, "--config", str(config))
    acked, ready = _hammer(server, 400)
    assert ready.wait(60), server.log()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    time.sleep(0.2)  # the callers see the server gone
    answered = list(acked)
    assert len(set(answered) - set(_trail_ids(url))) > 0  # the kill did leave entries unshipped
    again = start_server(tmp_path, url, "--config", str(config))  # adopts the dead log at start
    try:
        deadline = time.monotonic() + 30
        while set(answered) - set(_trail_ids(url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        ids = _trail_ids(url)
        assert set(answered) <= set(ids), f"{len(set(answered) - set(ids))} answered decisions lost"
    finally:
        assert again.stop() == 0, again.log()
    run_authz("audit", "ship", "--db", url)  # whatever the restarted server left
    ids = _trail_ids(url)
    assert len(ids) == len(set(ids))  # nothing shipped twice
    assert list((tmp_path / "authz.db.audit-log").glob("seg-*.log")) == []  # all shipped, removed


def test_workers_each_log_their_own_segment_and_one_chain_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    config = _config(tmp_path, "log", ship_interval=0.05)
    server = start_server(tmp_path, url, "--config", str(config), "--workers", "2")
    try:
        acked, ready = _hammer(server, 300)
        assert ready.wait(60), server.log()
        deadline = time.monotonic() + 30  # the second worker may still be starting
        while True:
            segments = {p.name.split("-")[1] for p in (tmp_path / "authz.db.audit-log").glob("seg-*.log")}
            if len(segments) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(segments) == 2, server.log()  # one segment per worker process
    finally:
        assert server.stop() == 0, server.log()
    time.sleep(0.2)
    ids = _trail_ids(url)  # verifies: one chain, whichever worker shipped which entry
    assert set(acked) <= set(ids) and len(ids) == len(set(ids))
