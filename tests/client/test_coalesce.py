"""Coalescing (issue 13): concurrent checks leave as one CheckBatch, against a real server.

RPCs are counted by a client interceptor on the channel the SDK is given: what crossed
the wire, not what the SDK says it did."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from authz_client import (
    SERVER_UNAVAILABLE,
    AsyncAuthzClient,
    AuthzClient,
    AuthzRpcError,
    CheckQuery,
    CheckResult,
    query,
)
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server

USERS = ("u-sam", "u-fiona", "u-quinn", "u-noah", "u-olga", "u-ivy", "u-lena", "sam@acme.example")
ACTIONS = ("view", "create", "edit", "delete", "approve")
MODULES = ("invoices", "estimates", "bills", "customers")
#: 100 different questions, a mix of allows and denies for several users.
QUESTIONS = [query("acme-eu", USERS[i % len(USERS)], ACTIONS[i % len(ACTIONS)],
                   MODULES[(i // 5) % len(MODULES)], record={"total": float(i * 100)})
             for i in range(100)]
BAD = query("acme-eu", "u-sam", "view", "bananas")


class Count(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.methods: Counter[str] = Counter()
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        with self._lock:
            self.methods[details.method.rsplit("/", 1)[-1]] += 1
        return continuation(details, request)


class AioCount(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.methods: Counter[str] = Counter()

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                                    request: Any) -> Any:
        method = details.method
        method = method.decode() if isinstance(method, bytes) else method
        self.methods[method.rsplit("/", 1)[-1]] += 1
        return await continuation(details, request)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
    seed(url)
    srv = start_server(tmp_path_factory.mktemp("server"), url)
    yield srv
    assert srv.stop() == 0, srv.log()


def counted(address: str, **kw: Any) -> tuple[AuthzClient, Count]:
    count = Count()
    channel = grpc.intercept_channel(grpc.insecure_channel(address), count)
    return AuthzClient(address, channel=channel, **kw), count


def answer(r: CheckResult) -> CheckResult:
    """A decision without what differs between two askings (id, time)."""
    return dataclasses.replace(r, decision_id="", decided_at=None)


@pytest.fixture(scope="module")
def one_by_one(server: ServerProc) -> list[CheckResult]:
    c, count = counted(server.address, coalesce=False)
    with c:
        out = [answer(c.check_query(q)) for q in QUESTIONS]
    assert count.methods == {"Check": 100}
    return out


def in_threads(c: AuthzClient, questions: list[CheckQuery]) -> list[Any]:
    """Each question from its own thread, all released at once; answers or exceptions."""
    out: list[Any] = [None] * len(questions)
    start = threading.Barrier(len(questions))

    def ask(i: int) -> None:
        start.wait()
        try:
            out[i] = c.check_query(questions[i])
        except AuthzRpcError as exc:
            out[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_a_lone_check_goes_straight_out_as_check(server: ServerProc) -> None:
    c, count = counted(server.address)
    with c:
        assert c.check("acme-eu", "u-sam", "view", "invoices").allowed
        assert c.check("acme-eu", "u-sam", "view", "invoices").allowed
    assert count.methods == {"Check": 2}


def test_threads_coalesce_into_fewer_rpcs_with_the_same_answers(
        server: ServerProc, one_by_one: list[CheckResult]) -> None:
    c, count = counted(server.address)
    with c:
        got = in_threads(c, QUESTIONS)
        stats = c.coalesce_stats
    assert [answer(r) for r in got] == one_by_one
    assert count.methods["CheckBatch"] >= 1
    assert sum(count.methods.values()) < len(QUESTIONS)
    assert stats.batches == count.methods["CheckBatch"] and stats.checks == count.methods["Check"]


def test_asyncio_gather_is_one_checkbatch_with_the_same_answers(
        server: ServerProc, one_by_one: list[CheckResult]) -> None:
    async def run() -> tuple[list[CheckResult], Counter[str]]:
        count = AioCount()
        channel = grpc.aio.insecure_channel(server.address, interceptors=[count])
        async with AsyncAuthzClient(server.address, channel=channel) as c:
            got = await asyncio.gather(*(c.check_query(q) for q in QUESTIONS))
            lone = await c.check("acme-eu", "u-sam", "view", "invoices")
        assert lone.allowed
        return list(got), count.methods

    got, methods = asyncio.run(run())
    assert [answer(r) for r in got] == one_by_one
    assert methods == {"CheckBatch": 1, "Check": 1}


def test_coalescing_can_be_turned_off(server: ServerProc) -> None:
    c, count = counted(server.address, coalesce=False)
    with c:
        in_threads(c, QUESTIONS[:20])
    assert count.methods == {"Check": 20}


def test_an_items_error_is_what_the_single_call_raises(server: ServerProc) -> None:
    with AuthzClient(server.address, coalesce=False) as alone, \
            pytest.raises(AuthzRpcError) as single:
        alone.check_query(BAD)

    async def run() -> list[Any]:
        count = AioCount()
        channel = grpc.aio.insecure_channel(server.address, interceptors=[count])
        async with AsyncAuthzClient(server.address, channel=channel) as c:
            got = await asyncio.gather(*(c.check_query(q) for q in [*QUESTIONS[:5], BAD,
                                                                    *QUESTIONS[5:10]]),
                                       return_exceptions=True)
        assert count.methods == {"CheckBatch": 1}
        return got

    got = asyncio.run(run())
    err = got[5]
    assert isinstance(err, AuthzRpcError)
    assert (err.code, err.message, err.violations) == (
        single.value.code, single.value.message, single.value.violations)
    assert [v.field for v in err.violations] == ["module"]
    assert all(isinstance(r, CheckResult) for i, r in enumerate(got) if i != 5)
    # The same through threads (the blocking client's path).
    c, _ = counted(server.address)
    with c:
        mixed = in_threads(c, [*QUESTIONS[:30], BAD])
    assert isinstance(mixed[-1], AuthzRpcError)
    assert (mixed[-1].code, mixed[-1].message) == (single.value.code, single.value.message)
    assert all(isinstance(r, CheckResult) for r in mixed[:-1])


def test_unavailable_server_denies_every_coalesced_check() -> None:
    address = f"127.0.0.1:{free_port()}"

    async def run() -> list[CheckResult]:
        async with AsyncAuthzClient(address, deadline=0.5, retries=0) as c:
            return list(await asyncio.gather(*(c.check_query(q) for q in QUESTIONS[:10])))

    got = asyncio.run(run())
    assert {(r.allowed, r.reason) for r in got} == {(False, SERVER_UNAVAILABLE)}


def test_a_min_revision_question_never_holds_a_batch_back(server: ServerProc) -> None:
    """The server may wait 2 s for a revision: such a question goes alone as Check."""
    async def run() -> Counter[str]:
        count = AioCount()
        channel = grpc.aio.insecure_channel(server.address, interceptors=[count])
        async with AsyncAuthzClient(server.address, channel=channel) as c:
            waiting = dataclasses.replace(QUESTIONS[0], min_revision=1)
            await asyncio.gather(*(c.check_query(q) for q in [waiting, *QUESTIONS[:5]]))
        return count.methods

    assert asyncio.run(run()) == {"Check": 1, "CheckBatch": 1}
