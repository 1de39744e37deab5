"""Per-call metrics are counted in bulk (issue 13) and /metrics is never behind."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from prometheus_client.parser import text_string_to_metric_families

from authz.v1 import authz_pb2 as pb
from server.edge.auth import Authenticator
from server.edge.gate import Gate, GatedServer
from server.process import metrics
from server.process.tally import Tally


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_counts_reach_a_scrape_at_once_and_the_histogram_matches_observe() -> None:
    tally = Tally()
    method = "TallyTest"

    async def calls() -> None:
        tally.answered(method, 0.0003, allowed=True, reason=pb.REASON_GRANTED)
        tally.answered(method, 0.002, allowed=False, reason=pb.REASON_NOT_MIGRATED)
        tally.answered(method, 9.0, Counter({(True, pb.REASON_GRANTED): 3}))

    before = _samples()
    asyncio.run(calls())  # the loop ends before the 1 s flush timer: the scrape flushes
    after = _samples()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("authz_rpcs_total", method=method, code="OK") == 3
    assert delta("authz_decision_duration_seconds_count", method=method) == 3
    assert delta("authz_decision_duration_seconds_bucket", method=method, le="0.0005") == 1
    assert delta("authz_decision_duration_seconds_bucket", method=method, le="0.0025") == 2
    assert delta("authz_decision_duration_seconds_bucket", method=method, le="2.5") == 2
    assert delta("authz_decision_duration_seconds_bucket", method=method, le="+Inf") == 3
    assert abs(delta("authz_decision_duration_seconds_sum", method=method) - 9.0023) < 1e-9
    assert delta("authz_decisions_total", outcome="allow", reason="granted") == 4
    assert delta("authz_decisions_total", outcome="deny", reason="not_migrated") == 1


def test_the_gate_wraps_each_method_once_when_it_registers() -> None:
    """No interceptor runs per call: every handler added through the server the services
    see is wrapped once (health and reflection left as they are)."""

    class Recorder:  # the grpc.aio server underneath
        def __init__(self) -> None:
            self.generic: list[grpc.GenericRpcHandler] = []
            self.registered: dict[str, grpc.RpcMethodHandler] = {}

        def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
            self.generic.extend(handlers)

        def add_registered_method_handlers(self, service: str,
                                           handlers: dict[str, grpc.RpcMethodHandler]) -> None:
            self.registered.update({f"/{service}/{m}": h for m, h in handlers.items()})

    async def unary(request: object, context: object) -> object:
        return request

    h = grpc.unary_unary_rpc_method_handler(unary)
    probe = grpc.unary_unary_rpc_method_handler(unary)
    raw = Recorder()
    server = GatedServer(raw, Gate(Authenticator(None)))
    server.add_registered_method_handlers("authz.v1.AuthzService", {"Check": h})
    server.add_registered_method_handlers("grpc.health.v1.Health", {"Check": probe})
    assert raw.registered["/authz.v1.AuthzService/Check"] is not h  # gated
    assert raw.registered["/grpc.health.v1.Health/Check"] is probe  # probes are not

    inner = {"/authz.v1.AuthzService/Check": h}

    class Lookup(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return inner.get(details.method)

    server.add_generic_rpc_handlers((Lookup(),))
    gated = raw.generic[-1]

    class Details(grpc.HandlerCallDetails):  # type: ignore[misc]
        def __init__(self, method: str) -> None:
            self.method = method

    first = gated.service(Details("/authz.v1.AuthzService/Check"))
    assert first is not None and first is not h
    assert gated.service(Details("/authz.v1.AuthzService/Check")) is first  # wrapped once
    inner["/authz.v1.AuthzService/Check"] = grpc.unary_unary_rpc_method_handler(unary)
    assert gated.service(Details("/authz.v1.AuthzService/Check")) is not first  # rewrapped
    assert gated.service(Details("/authz.v1.AuthzService/Nothing")) is None


def test_a_batch_counts_its_decisions_as_it_answers() -> None:
    """CheckBatch's decisions are counted while answering (not by reading 1,000 answers
    back); the counts match the answers."""
    from authz.directory_file import read as read_directory
    from authz.engine.engine import DEFAULT_POLICY_DIR, Engine, MemoryDirectory, PolicySet
    from server.api.audited import open_audit
    from server.api.service import AuthzService
    from server.process.config import Config

    examples = DEFAULT_POLICY_DIR.parent / "orgs" / "acme-eu" / "tests" / "directory.yaml"
    directory = MemoryDirectory([read_directory(examples).snapshot()])
    engine = Engine(PolicySet(DEFAULT_POLICY_DIR), directory)
    audit = open_audit(Config(audit_mode="off"), directory)
    batch = pb.CheckBatchRequest(requests=[
        pb.CheckRequest(org_id="acme-eu", user=user, action=action, module="invoices")
        for user in ("u-sam", "u-olga", "u-nobody", "u-anna") for action in ("view", "delete")])
    counts: Counter[tuple[bool, int]] = Counter()
    out, _, errors = AuthzService._batch(engine, audit, batch, "test", None, counts)
    assert errors == 0
    assert counts == Counter((r.response.decision == pb.DECISION_ALLOW, r.response.reason)
                             for r in out.results)
    assert sum(counts.values()) == 8 and len(counts) >= 2
