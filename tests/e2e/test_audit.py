"""The audit trail through a real server: every Check, CheckBatch item and attribution
recorded; Attribute and its errors; QueryAudit and VerifyAudit; a SIGKILL in strict
mode loses no acknowledged decision."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.store import open_store
from authz.store.audit import AuditStore
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import REPO, ServerProc, run_authz, seed, start_server

ORG = "acme-eu"
Stub = authz_pb2_grpc.AuthzServiceStub


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    """A strict-mode server on its own database (acme-eu, and globex-us in legacy mode)."""
    workdir: Path = tmp_path_factory.mktemp("audit")
    url = f"sqlite:///{workdir / 'authz.db'}"
    seed(url)
    run_authz("directory", "import", "--db", url,
              str(REPO / "authz/policies/orgs/globex-us/tests/directory.yaml"))
    proc = start_server(workdir, url, "--audit-mode", "strict")
    yield proc, url
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def sstub(strict: tuple[ServerProc, str]) -> Iterator[Stub]:
    with grpc.insecure_channel(strict[0].address) as ch:
        yield Stub(ch)


def _check(stub: Stub, user: str, action: str = "view", module: str = "invoices", org: str = ORG,
           record_id: str = "", total: float | None = None) -> pb.CheckResponse:
    record = pb.Record(record_id=record_id)
    if total is not None:  # creating an invoice: its approval rules read the total
        record.total.value = total
    resp: pb.CheckResponse = stub.Check(pb.CheckRequest(
        org_id=org, user=user, action=action, module=module, record=record), timeout=5)
    return resp


def _query(stub: Stub, **kw: object) -> list[pb.AuditEntry]:
    resp: pb.QueryAuditResponse = stub.QueryAudit(pb.QueryAuditRequest(org_id=ORG, **kw), timeout=5)
    return list(resp.entries)


def _error(stub: Stub, **kw: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.Attribute(pb.AttributeRequest(**kw), timeout=5)
    return info.value


def test_each_check_and_batch_item_is_recorded_with_who_and_why(sstub: Stub) -> None:
    d = _check(sstub, "sam@acme.example", record_id="inv-audit-1")
    (e,) = _query(sstub, decision_id=d.decision_id)
    assert (e.kind, e.crm_user, e.acting_kind, e.acting_id) == (
        "check", "u-sam", "finance_user:books", "b-sam")
    assert (e.action, e.module, e.record_id, e.allowed, e.reason) == (
        "view", "invoices", "inv-audit-1", True, "granted")
    assert e.mode == "unified" and e.policy_revision == d.policy_revision
    assert e.directory_revision == d.directory_revision and e.caller and e.at and len(e.hash) == 64
    batch = sstub.CheckBatch(pb.CheckBatchRequest(requests=[
        pb.CheckRequest(org_id=ORG, user="u-noah", action="view", module="invoices"),
        pb.CheckRequest(org_id=ORG, user="", action="view", module="invoices"),  # invalid item
        pb.CheckRequest(org_id=ORG, user="u-ivy", action="create", module="estimates")]), timeout=5)
    ids = [r.response.decision_id for r in batch.results if r.HasField("response")]
    assert len(ids) == 2
    recorded = [_query(sstub, decision_id=i)[0] for i in ids]
    assert [(e.crm_user, e.allowed, e.reason) for e in recorded] == [
        ("u-noah", False, "not_migrated"), ("u-ivy", True, "granted")]


def test_a_batch_item_is_recorded_as_the_same_check_alone(sstub: Stub) -> None:
    """CheckBatch writes its entries without an entry object each (the log's rows): every
    column but the time and the id is what the same question asked by Check records, in
    both modes; a batch's entries share one time, as its answers share one decided_at."""
    asks = [pb.CheckRequest(org_id=ORG, user="sam@acme.example", action="view",
                            module="invoices", record=pb.Record(record_id="inv-row-1")),
            pb.CheckRequest(org_id=ORG, user="u-noah", action="view", module="invoices"),
            pb.CheckRequest(org_id="globex-us", user="hank@globex.example", action="view",
                            module="invoices")]
    batch = sstub.CheckBatch(pb.CheckBatchRequest(requests=asks), timeout=5)
    alone = [sstub.Check(a, timeout=5) for a in asks]
    columns = ("kind", "crm_user", "acting_kind", "acting_id", "action", "module", "record_id",
               "allowed", "reason", "mode", "policy_revision", "directory_revision", "caller")

    def recorded(decision_id: str, org: str) -> pb.AuditEntry:
        resp = sstub.QueryAudit(pb.QueryAuditRequest(org_id=org, decision_id=decision_id),
                                timeout=5)
        (e,) = resp.entries
        return e

    from_batch = [recorded(r.response.decision_id, a.org_id)
                  for r, a in zip(batch.results, asks, strict=True)]
    from_check = [recorded(r.decision_id, a.org_id) for r, a in zip(alone, asks, strict=True)]
    assert [e.mode for e in from_batch] == ["unified", "unified", "legacy"]
    for b, c in zip(from_batch, from_check, strict=True):
        assert [getattr(b, k) for k in columns] == [getattr(c, k) for k in columns]
    assert len({e.at for e in from_batch}) == 1


def test_query_by_user_record_and_pages(sstub: Stub) -> None:
    for i in range(5):
        _check(sstub, "u-paul", record_id=f"inv-page-{i % 2}")
    by_user = _query(sstub, user="paul@acme.example", page_size=2)
    assert len(by_user) == 2 and {e.crm_user for e in by_user} == {"u-paul"}
    seen, token = [], ""
    while True:
        resp = sstub.QueryAudit(pb.QueryAuditRequest(org_id=ORG, user="u-paul", page_size=2,
                                                     page_token=token), timeout=5)
        seen += [e.seq for e in resp.entries]
        token = resp.next_page_token
        if not token:
            break
    assert len(seen) == 5 and seen == sorted(seen)
    assert len(_query(sstub, record_id="inv-page-0")) == 3
    with pytest.raises(grpc.RpcError) as info:
        sstub.QueryAudit(pb.QueryAuditRequest(org_id=ORG, page_token="x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_attribute_names_the_user_records_it_and_says_the_mode(sstub: Stub) -> None:
    d = _check(sstub, "u-sam", action="create", record_id="inv-9", total=500)
    a = sstub.Attribute(pb.AttributeRequest(org_id=ORG, user="u-sam", action="create",
                                            module="invoices", record_id="inv-9",
                                            decision_id=d.decision_id), timeout=5)
    assert a.mode == pb.MODE_UNIFIED and a.act_as == "b-sam" and a.decision_id == d.decision_id
    assert (a.display_name, a.send_from_email) == ("Sam Weber", "sam@acme.example")
    assert a.identity.kind == pb.IDENTITY_KIND_FINANCE_USER
    (e,) = _query(sstub, decision_id=a.attribution_id)
    assert (e.kind, e.crm_user, e.acting_id, e.reason) == (
        "attribute", "u-sam", "b-sam", f"cites {d.decision_id}")
    ivy = sstub.Attribute(pb.AttributeRequest(org_id=ORG, user="ivy@acme.example", action="create",
                                              module="estimates"), timeout=5)
    assert ivy.act_as == "iu-ivy" and ivy.identity.kind == pb.IDENTITY_KIND_INTEGRATION_USER


def test_legacy_mode_says_so_in_check_and_attribute(sstub: Stub) -> None:
    d = _check(sstub, "u-homer", action="create", org="globex-us")
    assert d.mode == pb.MODE_LEGACY
    a = sstub.Attribute(pb.AttributeRequest(org_id="globex-us", user="u-homer", action="create",
                                            module="invoices"), timeout=5)
    assert a.mode == pb.MODE_LEGACY and a.act_as == "u-hank" and "legacy mode" in a.send_from_note
    resp = sstub.QueryAudit(pb.QueryAuditRequest(org_id="globex-us", user="u-homer"), timeout=5)
    assert [(e.kind, e.mode, e.acting_kind) for e in resp.entries] == [
        ("check", "legacy", "integration_owner"), ("attribute", "legacy", "integration_owner:books")]


def test_attribute_errors_are_clear_and_record_nothing(sstub: Stub) -> None:
    before = sstub.VerifyAudit(pb.VerifyAuditRequest(org_id=ORG), timeout=5).head_seq
    allowed = _check(sstub, "u-sam", action="view", record_id="inv-1")
    denied = _check(sstub, "u-sam", action="delete")
    base = {"org_id": ORG, "user": "u-sam", "action": "view", "module": "invoices",
            "record_id": "inv-1"}
    err = _error(sstub, **{**base, "user": "u-noah"})
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "u-noah" in (err.details() or "")
    status = rpc_status.from_call(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) or status.details[-1].Unpack(info)
    assert info.reason == "NOT_MIGRATED"
    assert _error(sstub, **{**base, "user": "nobody@acme.example"}).code() == \
        grpc.StatusCode.PERMISSION_DENIED
    assert _error(sstub, **{**base, "org_id": "no-such-org"}).code() == grpc.StatusCode.NOT_FOUND
    assert _error(sstub, **{**base, "decision_id": "f" * 32}).code() == grpc.StatusCode.NOT_FOUND
    other_user = _error(sstub, **{**base, "user": "u-paul", "decision_id": allowed.decision_id})
    assert other_user.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "another user" in (other_user.details() or "")
    other_op = _error(sstub, **{**base, "action": "email", "decision_id": allowed.decision_id})
    assert other_op.code() == grpc.StatusCode.INVALID_ARGUMENT
    not_allowed = _error(sstub, **{**base, "action": "delete", "record_id": "",
                                   "decision_id": denied.decision_id})
    assert not_allowed.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "did not allow" in (not_allowed.details() or "")
    other_org = _check(sstub, "u-homer", org="globex-us")
    assert _error(sstub, **{**base, "decision_id": other_org.decision_id}).code() == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert _error(sstub, **{**base, "module": ""}).code() == grpc.StatusCode.INVALID_ARGUMENT
    after = sstub.VerifyAudit(pb.VerifyAuditRequest(org_id=ORG), timeout=5).head_seq
    assert after == before + 2  # the two Checks; no attribution was recorded


def test_verify_audit_rpc_and_cli_pass(sstub: Stub, strict: tuple[ServerProc, str]) -> None:
    v = sstub.VerifyAudit(pb.VerifyAuditRequest(org_id=ORG), timeout=5)
    assert v.ok and v.checked == v.head_seq > 0 and list(v.problems) == [] and v.dropped == 0
    out = run_authz("audit", "verify", "--db", strict[1])
    assert "acme-eu: ok" in out.stdout and "globex-us: ok" in out.stdout
    exported = run_authz("audit", "export", "--db", strict[1], "--org", ORG).stdout.splitlines()
    assert len(exported) == v.checked


def test_batched_attribute_finds_a_decision_still_queued(stub: Stub) -> None:
    """The default (batched) server: a decision cited at once is found (queue flushed)."""
    d = _check(stub, "u-sam", action="create", record_id="inv-2", total=500)
    a = stub.Attribute(pb.AttributeRequest(org_id=ORG, user="u-sam", action="create",
                                           module="invoices", record_id="inv-2",
                                           decision_id=d.decision_id), timeout=5)
    assert a.decision_id == d.decision_id and a.act_as == "b-sam"


def test_sigkill_in_strict_mode_loses_no_acknowledged_decision(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    seed(url)
    proc = start_server(tmp_path, url, "--audit-mode", "strict")
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def hammer(user: str) -> None:
        with grpc.insecure_channel(proc.address) as ch:
            s = Stub(ch)
            while True:
                try:
                    r = _check(s, user)
                except grpc.RpcError:
                    return  # the server is gone
                with lock:
                    acked.append(r.decision_id)
                    if len(acked) >= 300:
                        enough.set()

    threads = [threading.Thread(target=hammer, args=(u,))
               for u in ("u-sam", "u-paul", "u-ivy", "u-noah", "u-anna", "u-lena")]
    for t in threads:
        t.start()
    try:
        assert enough.wait(60), proc.log()
        proc.proc.send_signal(signal.SIGKILL)  # mid-flight: Checks are being answered
        proc.proc.wait(10)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        for t in threads:
            t.join(10)
    assert proc.proc.returncode == -signal.SIGKILL
    # The log pipeline (default): what was acknowledged is in the killed server's local
    # log; `authz audit ship` (or the next start) carries it to the store.
    shipped = run_authz("audit", "ship", "--db", url)
    assert "shipped" in shipped.stdout, shipped.stdout
    with open_store(url) as store:
        trail = AuditStore(store.engine)
        recorded = {e.decision_id for e in trail.entries(ORG)}
        assert trail.verify(ORG).ok
    missing = set(acked) - recorded
    assert missing == set(), f"{len(missing)} acknowledged decisions missing from the trail"
    out = run_authz("audit", "verify", "--db", url)
    assert out.returncode == 0 and "acme-eu: ok" in out.stdout
