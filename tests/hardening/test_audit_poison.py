"""Poison and a wedged store against the audit trail, on real PostgreSQL and a real server.

An attacker's entry the store refuses (a NUL byte in an Envoy header; here also any entry
a trigger refuses, standing for whatever else a store may refuse) must not wedge the
trail: it is quarantined, counted and shown by VerifyAudit, and every other entry is
written; in strict mode only the poisoned call fails. A store that hangs bounds every
wait by the call's deadline, and SIGTERM still ends within the grace.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from authz_server.xds import envoy_service_auth_v3_external_auth_pb2 as ext
from authz_server.xds import envoy_service_auth_v3_external_auth_pb2_grpc as ext_grpc
from tests.e2e.serverproc import ServerProc, run_authz, seed, start_server

pytestmark = pytest.mark.postgres
ORG = "acme-eu"
Stub = authz_pb2_grpc.AuthzServiceStub
USERS = ("u-sam", "u-paul", "u-ivy", "u-anna")


def _refuse_poison(url: str) -> None:
    """Make the store refuse any entry whose record id starts with 'poison' (a trigger:
    the store's own refusal, as PostgreSQL refuses a NUL byte)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("""
            CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN
              IF NEW.record_id LIKE 'poison%' THEN RAISE EXCEPTION 'poisoned entry'; END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql"""))
        conn.execute(sa.text("CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_entries "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"))
    engine.dispose()


def _serve(tmp_path: Path, url: str, mode: str, *extra: str, pipeline: str = "queue"
           ) -> ServerProc:
    config = tmp_path / "authz.toml"
    config.write_text(f'audit_queue = 40\naudit_flush_interval = 0.02\naudit_pipeline = "{pipeline}"\n'
                      f'audit_log_dir = "{tmp_path / "audit-log"}"\n')
    return start_server(tmp_path, url, "--audit-mode", mode, "--config", str(config), *extra)


@pytest.fixture
def pg(postgres_url: str) -> str:
    seed(postgres_url)
    return postgres_url


def _check(stub: Stub, user: str, record_id: str = "", timeout: float = 10) -> pb.CheckResponse:
    resp: pb.CheckResponse = stub.Check(pb.CheckRequest(
        org_id=ORG, user=user, action="view", module="invoices",
        record=pb.Record(record_id=record_id)), timeout=timeout)
    return resp


def _hammer(address: str, n: int, poison_every: int = 0) -> tuple[list[str], list[str]]:
    """Checks from several threads (some poisoned); returns (acknowledged ids, codes of
    the calls that failed, as 'poison:CODE' or 'clean:CODE')."""
    acked: list[str] = []
    failed: list[str] = []
    lock = threading.Lock()

    def run(user: str) -> None:
        with grpc.insecure_channel(address) as ch:
            stub = Stub(ch)
            for i in range(n):
                poisoned = bool(poison_every) and i % poison_every == poison_every - 1
                record = f"poison-{user}-{i}" if poisoned else f"inv-{i}"
                try:
                    d = _check(stub, user, record)
                except grpc.RpcError as exc:
                    with lock:
                        failed.append(f"{'poison' if poisoned else 'clean'}:{exc.code().name}")
                    continue
                with lock:
                    acked.append(d.decision_id)

    threads = [threading.Thread(target=run, args=(u,)) for u in USERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return acked, failed


def _settled(stub: Stub, quarantined: int) -> pb.VerifyAuditResponse:
    """VerifyAudit once the trail has caught up (VerifyAudit waits up to 5 s for this
    server's log; bisecting poison on a loaded machine may take longer)."""
    deadline = time.monotonic() + 60
    while True:
        v: pb.VerifyAuditResponse = stub.VerifyAudit(pb.VerifyAuditRequest(org_id=ORG), timeout=10)
        if v.quarantined >= quarantined or time.monotonic() > deadline:
            return v
        time.sleep(0.5)


def _recorded(stub: Stub) -> set[str]:
    out: set[str] = set()
    token = ""
    while True:
        page = stub.QueryAudit(pb.QueryAuditRequest(org_id=ORG, page_size=1000, page_token=token),
                               timeout=10)
        out |= {e.decision_id for e in page.entries}
        token = page.next_page_token
        if not token:
            return out


def test_strict_only_the_poisoned_calls_fail_and_are_quarantined(pg: str, tmp_path: Path) -> None:
    _refuse_poison(pg)
    server = _serve(tmp_path, pg, "strict")
    try:
        acked, failed = _hammer(server.address, 40, poison_every=10)
        assert sorted(set(failed)) == ["poison:UNAVAILABLE"], failed  # no clean call failed
        assert len(failed) == 4 * len(USERS) and len(acked) == 36 * len(USERS)
        with grpc.insecure_channel(server.address) as ch:
            stub = Stub(ch)
            assert set(acked) <= _recorded(stub)  # every acknowledged decision is recorded
            v = stub.VerifyAudit(pb.VerifyAuditRequest(org_id=ORG), timeout=10)
        assert v.ok and v.quarantined == len(failed), v
        assert all("refused" in line and "poisoned entry" not in line for line in v.quarantine)
        out = run_authz("audit", "verify", "--db", pg, check=False)
        assert out.returncode == 0 and f"{len(failed)} entries QUARANTINED" in out.stdout
        assert "poisoned entry" in out.stdout  # the store's text: for the operator's CLI only
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("pipeline", ["queue", "log"])
def test_batched_poison_is_quarantined_and_every_other_entry_written(
        pg: str, tmp_path: Path, pipeline: str) -> None:
    _refuse_poison(pg)
    server = _serve(tmp_path, pg, "batched", pipeline=pipeline)
    try:
        acked, failed = _hammer(server.address, 60, poison_every=15)
        assert failed == []  # batched answers before writing
        with grpc.insecure_channel(server.address) as ch:
            stub = Stub(ch)
            v = _settled(stub, 4 * len(USERS))
            recorded = _recorded(stub)
        assert v.ok and v.quarantined == 4 * len(USERS), v
        assert len(set(acked) - recorded) == v.quarantined  # the rest all written
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("pipeline", ["queue", "log"])
def test_nul_byte_in_an_envoy_header_does_not_wedge_the_trail(pg: str, tmp_path: Path,
                                                              pipeline: str) -> None:
    """The attack as seen: one ext_authz request with a NUL byte, then ordinary traffic.
    Whether the door refuses it or the writer quarantines it, nothing else is lost."""
    server = _serve(tmp_path, pg, "batched", pipeline=pipeline)
    try:
        with grpc.insecure_channel(server.address) as ch:
            envoy = ext_grpc.AuthorizationStub(ch)
            req = ext.CheckRequest()
            http = req.attributes.request.http
            http.method = "GET"
            http.headers.update({"x-authz-org": ORG, "x-authz-user": "u-sam",
                                 "x-authz-module": "invoices", "x-authz-record-id": "inv\x001"})
            envoy.Check(req, timeout=10)  # refused at the door, or decided (h2's validation)
        acked, failed = _hammer(server.address, 30)  # > the queue of 40: a wedge would show
        assert failed == []
        with grpc.insecure_channel(server.address) as ch:
            stub = Stub(ch)
            v = stub.VerifyAudit(pb.VerifyAuditRequest(org_id=ORG), timeout=10)
            assert set(acked) <= _recorded(stub)
        assert v.ok and v.quarantined in (0, 1) and v.head_seq >= len(acked)
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("pipeline", ["queue", "log"])
def test_a_wedged_store_bounds_each_call_by_its_deadline_and_sigterm_by_the_grace(
        pg: str, tmp_path: Path, pipeline: str) -> None:
    server = _serve(tmp_path, pg, "strict", "--grace", "2", pipeline=pipeline)
    engine = sa.create_engine(pg, poolclass=NullPool)
    conn = engine.connect()
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = Stub(ch)
            _check(stub, "u-sam")  # the organization's head row exists
            tx = conn.begin()  # hold the head: every append now hangs behind this lock
            conn.execute(sa.text("SELECT seq FROM audit_heads WHERE org_id = :o FOR UPDATE"),
                         {"o": ORG})
            if pipeline == "log":  # strict = on the local disk: the store's lock is not waited on
                late = _check(stub, "u-paul", timeout=2)
                assert late.decision_id
            else:
                with pytest.raises(grpc.RpcError) as info:
                    _check(stub, "u-paul", timeout=2)
                # The server answered before the deadline, saying the trail did not
                # confirm: not the client's DEADLINE_EXCEEDED after a call left hanging.
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(12)  # grace 2 s (+ start of the exit): never the 20 s+ hang
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not finish with a wedged store:\n" + server.log()[-3000:])
        assert code == 0, server.log()
        tx.rollback()
        if pipeline == "log":  # the acknowledged entry waited in the log: nothing lost
            run_authz("audit", "ship", "--db", pg, "--log-dir", str(tmp_path / "audit-log"))
            out = run_authz("audit", "query", "--db", pg, "--org", ORG, "--user", "u-paul")
            assert late.decision_id in out.stdout
    finally:
        conn.close()
        engine.dispose()
        if server.proc.poll() is None:
            server.proc.kill()


def test_log_pipeline_strict_poison_is_quarantined_and_nothing_else_fails(
        pg: str, tmp_path: Path) -> None:
    """Strict on the log pipeline acknowledges once the entry is on the local disk; the
    shipper meets the poison later, quarantines it and ships the rest."""
    _refuse_poison(pg)
    server = _serve(tmp_path, pg, "strict", pipeline="log")
    try:
        acked, failed = _hammer(server.address, 40, poison_every=10)
        assert failed == [] and len(acked) == 40 * len(USERS)
        with grpc.insecure_channel(server.address) as ch:
            stub = Stub(ch)
            v = _settled(stub, 4 * len(USERS))
            recorded = _recorded(stub)
        assert v.ok and v.quarantined == 4 * len(USERS), v
        assert len(set(acked) - recorded) == v.quarantined
    finally:
        assert server.stop() == 0, server.log()
