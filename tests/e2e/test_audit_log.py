"""The audit log pipeline through real servers: a batched server killed with SIGKILL
loses no answered decision (the next start ships its log, nothing twice), and `--workers`
processes each keep their own log segment while one hash chain per organization holds."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from authz.store import open_store
from authz.store.audit import AuditStore
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import ServerProc, free_port, run_authz, seed, start_server

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
        # Until `enough` are answered a failed call is retried (a second worker may still be
        # starting, a loaded machine may miss a deadline); after that an error means the
        # test has stopped the server, and the thread ends. Only answered ids are checked.
        give_up = time.monotonic() + 120
        with grpc.insecure_channel(server.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            req = pb.CheckRequest(org_id=ORG, user=user, action="view", module="invoices")
            while True:
                try:
                    d = stub.Check(req, timeout=5)
                except grpc.RpcError:
                    if ready.is_set() or time.monotonic() > give_up:
                        return
                    time.sleep(0.05)
                    continue
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


def _checks(server: ServerProc, n: int) -> list[str]:
    with grpc.insecure_channel(server.address) as ch:
        stub = authz_pb2_grpc.AuthzServiceStub(ch)
        return [stub.Check(pb.CheckRequest(org_id=ORG, user=USERS[i % len(USERS)],
                                           action="view", module="invoices"),
                           timeout=10).decision_id for i in range(n)]


def _serve_logged(tmp_path: Path, shipper: str, mode: str
                  ) -> tuple[str, ServerProc, int, Path]:
    """A server on the log pipeline with this shipper and mode, passes 2 s apart (entries
    stay unshipped a while), and a metrics port: (store url, server, metrics port, log
    folder)."""
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    config = _config(tmp_path, "log", ship_interval=2.0)
    config.write_text(config.read_text() + f'audit_shipper = "{shipper}"\n'
                      f'audit_mode = "{mode}"\n')
    metrics = free_port()
    server = start_server(tmp_path, url, "--config", str(config),
                          "--metrics-listen", f"127.0.0.1:{metrics}")
    return url, server, metrics, tmp_path / "authz.db.audit-log"


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


@pytest.mark.parametrize(("shipper", "mode"), [("process", "batched"), ("thread", "strict")])
def test_a_segment_deleted_under_the_server_loses_nothing_and_is_reported(
        tmp_path: Path, shipper: str, mode: str) -> None:
    """An operator's cleanup deletes the live segment: entries written before (not yet
    shipped) and after both reach the store, once each, and the event is reported."""
    url, server, metrics, log_dir = _serve_logged(tmp_path, shipper, mode)
    try:
        before = _checks(server, 40)
        (live,) = log_dir.glob(f"seg-{server.proc.pid}-*.log")
        live.unlink()
        after = _checks(server, 40)
        deadline = time.monotonic() + 60
        while set(before + after) - set(_trail_ids(url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        ids = _trail_ids(url)  # verifies the chain
        missing = set(before + after) - set(ids)
        assert not missing, f"{len(missing)} answered decisions lost:\n{server.log()[-3000:]}"
        assert len(ids) == len(set(ids))  # nothing shipped twice
        text = _metrics(metrics)
        assert "authz_audit_log_segments_lost_total 1.0" in text
        assert "authz_audit_log_lost_bytes_total 0.0" in text
        assert '"audit_log_segment_lost"' in server.log()
        assert [p for p in log_dir.glob("*") if p.name.startswith(live.name)] == []
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize(("shipper", "mode"), [("process", "batched"), ("thread", "strict")])
def test_a_segment_truncated_under_the_server_is_reported_and_later_entries_ship(
        tmp_path: Path, shipper: str, mode: str) -> None:
    """A live segment cut to 0 bytes (`truncate -s 0`, a log-rotation tool's copytruncate)
    keeps its name and inode, so it was not seen: the writer appended at byte 0 while the
    shipper waited at its old offset, read the middle of a record as damage and stopped
    for good. Before: strict mode, 40 of 40 decisions answered after the truncation never
    reached the store; batched mode, 40 unshipped ones lost with no event and no metric.
    Bytes already cut away cannot come back; they are reported, and nothing after is lost."""
    url, server, metrics, log_dir = _serve_logged(tmp_path, shipper, mode)
    try:
        before = _checks(server, 40)
        (live,) = log_dir.glob(f"seg-{server.proc.pid}-*.log")
        with live.open("r+b") as f:
            f.truncate(0)
        cut = set(before) - set(_trail_ids(url))  # not yet shipped at the truncation
        try:  # written at byte 0 of the cut file: refused (strict), or maybe lost (batched)
            first = _checks(server, 1)
        except grpc.RpcError as exc:
            assert mode == "strict" and exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            first = []
        after = first if mode == "strict" else []
        after += _checks(server, 40)
        deadline = time.monotonic() + 60
        while set(after) - set(_trail_ids(url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        ids = _trail_ids(url)  # verifies the chain
        missing = set(after) - set(ids)
        assert not missing, f"{len(missing)} decisions after the cut lost:\n{server.log()[-3000:]}"
        assert len(ids) == len(set(ids))
        # The later entries can ship before the writer's next check notices the cut (when
        # the shipper had shipped nothing yet, they sit at byte 0 where it reads): the
        # report comes within about a second, so it is awaited, not assumed.
        deadline = time.monotonic() + 30
        while True:
            text = _metrics(metrics)
            reported = ("authz_audit_log_segments_lost_total 1.0" in text
                        and '"audit_log_segment_lost"' in server.log())
            if reported or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "authz_audit_log_segments_lost_total 1.0" in text
        assert '"audit_log_segment_lost"' in server.log()
        if cut:  # entries only in the cut bytes: gone, and counted
            assert "authz_audit_log_lost_bytes_total 0.0" not in text
    finally:
        assert server.stop() == 0, server.log()
