"""The store health watcher: the prober thread's outcome reaches the health service
without the event loop polling for it (issue 13), and a stuck probe still counts as
unreachable."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from grpc_health.v1 import health, health_pb2

from authz_server.process.health import STORE_SERVICE, HealthWatcher

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Context:
    """The one thing Check asks of a call's context: abort on a service not yet set."""

    async def abort(self, code: object) -> None:
        raise LookupError(code)


async def _status(servicer: health.aio.HealthServicer, want: int) -> None:
    """Wait (generously: no timing asserted) until the store's health is `want`."""
    request = health_pb2.HealthCheckRequest(service=STORE_SERVICE)
    for _ in range(3000):
        try:
            answer = await servicer.Check(request, _Context())
        except LookupError:
            answer = None
        if answer is not None and answer.status == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"health never turned {want}")


def test_a_failing_then_recovered_store_turns_health_off_and_on() -> None:
    down = threading.Event()

    def probe() -> None:
        if down.is_set():
            raise ConnectionError("refused")

    async def scenario() -> None:
        servicer = health.aio.HealthServicer()
        with ThreadPoolExecutor(1) as pool:
            watcher = HealthWatcher(probe, servicer, ("",), pool, interval=0.05, timeout=5)
            watcher.start()
            await _status(servicer, SERVING)
            down.set()
            await _status(servicer, NOT_SERVING)
            assert not watcher.reachable
            down.clear()
            await _status(servicer, SERVING)
            await watcher.stop()

    asyncio.run(scenario())


def test_a_stuck_probe_counts_as_unreachable() -> None:
    stuck, release = threading.Event(), threading.Event()

    def probe() -> None:
        if stuck.is_set():
            release.wait(30)

    async def scenario() -> None:
        servicer = health.aio.HealthServicer()
        with ThreadPoolExecutor(1) as pool:
            watcher = HealthWatcher(probe, servicer, ("",), pool, interval=0.05, timeout=0.3)
            watcher.start()
            await _status(servicer, SERVING)
            stuck.set()
            await _status(servicer, NOT_SERVING)
            stuck.clear()
            release.set()  # the probe returns: reachable again
            await _status(servicer, SERVING)
            await watcher.stop()

    asyncio.run(scenario())
