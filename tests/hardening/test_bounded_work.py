"""Bounded work per request, tried as an attacker would: one small request must not stop
the server by tying up its worker threads.

A `min_revision` no replica will reach makes the store wait for it. Those waits must be
once per request and organization (not once per CheckBatch item), bounded by the call's
deadline, and abandoned when the client goes away.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from tests.e2e.serverproc import ServerProc, seed, start_server

THREADS = 4  # the server's worker threads: a handful of hostile calls could take them all
UNREACHABLE = 10**12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    work: Path = tmp_path_factory.mktemp("bounded")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    proc = start_server(work, url, "--threads", str(THREADS), "--grace", "2")
    yield proc
    assert proc.stop() == 0, proc.log()[-4000:]


def _batch(items: int, min_revision: int = UNREACHABLE) -> pb.CheckBatchRequest:
    return pb.CheckBatchRequest(requests=[
        pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view", module="invoices",
                        min_revision=min_revision) for _ in range(items)])


def test_batch_with_unreachable_revision_waits_once_and_answers(server: ServerProc) -> None:
    """1000 items each waiting for a revision that never comes: one wait for the whole
    batch, so the call is answered (each item FAILED_PRECONDITION) instead of taking
    1000 x revision_wait in a worker thread."""
    with grpc.insecure_channel(server.address) as ch:
        out = pb_grpc.AuthzServiceStub(ch).CheckBatch(_batch(1000), timeout=20)
    assert len(out.results) == 1000
    assert all(r.WhichOneof("result") == "error" for r in out.results)
    assert {r.error.code for r in out.results} == {grpc.StatusCode.FAILED_PRECONDITION.value[0]}


def test_clients_that_give_up_do_not_hold_worker_threads(server: ServerProc) -> None:
    """More hostile calls than worker threads, each given up by its client after a short
    deadline; then an ordinary call that needs a worker thread must still be answered.

    A hostile call ends one of three ways, all refusals: the client's deadline, the
    server's wait running out (Check: FAILED_PRECONDITION), or, for a CheckBatch, that
    same wait running out answered per item (OK, every item FAILED_PRECONDITION). The
    wait ends at the call's deadline, so which of these the client sees is a race between
    the answer and its own deadline timer, which fires late on a loaded machine: only a
    decision, or any other error, fails the test (it once asserted the first two only,
    and failed under load when the batch's answer won the race)."""
    refused = grpc.StatusCode.FAILED_PRECONDITION

    def hostile(i: int) -> str:
        with grpc.insecure_channel(server.address) as ch:
            stub = pb_grpc.AuthzServiceStub(ch)
            try:
                if i % 2:
                    out = stub.CheckBatch(_batch(200), timeout=0.5)
                    items = {r.error.code if r.WhichOneof("result") == "error" else None
                             for r in out.results}
                    return refused.name if items == {refused.value[0]} else f"OK {items}"
                stub.Check(_batch(1).requests[0], timeout=0.5)
            except grpc.RpcError as err:
                return str(err.code().name)
            return "OK (decided)"

    with ThreadPoolExecutor(THREADS * 3) as pool:
        outcomes = list(pool.map(hostile, range(THREADS * 3)))
    assert set(outcomes) <= {grpc.StatusCode.DEADLINE_EXCEEDED.name, refused.name}, outcomes
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.AuthzServiceStub(ch)
        # ListFilter always runs in a worker thread: answered only if one is free.
        out = stub.ListFilter(pb.ListFilterRequest(org_id="acme-eu", user="u-sam",
                                                   module="invoices", action="view"), timeout=5)
        assert out.org_id == "acme-eu"
        # A cancelled wait does not poison later waits: a reachable revision is served.
        ok = stub.Check(_batch(1, min_revision=1).requests[0], timeout=5)
        assert ok.directory_revision >= 1
