"""Database reachability drives health: NOT_SERVING while the store is unreachable.

The store keeps answering from cached snapshots for a while when PostgreSQL goes away
(`max_staleness`), but a load balancer should still move traffic to a replica that can
reach it, and an operator should see it. A probe (one cheap revision read) runs every
`interval` seconds in the worker pool; two states only, so flapping is visible in logs
as pairs of `store_unreachable` / `store_reachable` events. Recovery needs no restart:
the engine's pool reconnects (pre-ping) and the next probe turns health back on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from grpc_health.v1 import health, health_pb2

from . import metrics
from .logs import event

log = logging.getLogger("authz.server")
STORE_SERVICE = "authz.store"  # health service name carrying the database state alone


class HealthWatcher:
    """Probes the store and sets the health of `services` (and STORE_SERVICE) to match."""

    def __init__(self, probe: Callable[[], object], servicer: health.aio.HealthServicer,
                 services: tuple[str, ...], executor: Executor, interval: float = 1.0,
                 timeout: float = 5.0) -> None:
        self.probe = probe
        self.servicer = servicer
        self.services = services
        self.executor = executor
        self.interval = interval
        self.timeout = timeout
        self.reachable = True
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="authz-health")

    async def stop(self) -> None:
        """Stop probing; health is left as it is (the drain sets NOT_SERVING itself)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check_once(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self.executor, self.probe), self.timeout)
            ok, error = True, ""
        except Exception as exc:  # any failure to read counts as unreachable
            ok, error = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if self._stopped:
            return ok
        if ok != self.reachable:
            self.reachable = ok
            status = (health_pb2.HealthCheckResponse.SERVING if ok
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in (*self.services, STORE_SERVICE):
                await self.servicer.set(name, status)
            event(log, logging.INFO if ok else logging.WARNING,
                  "store_reachable" if ok else "store_unreachable", error=error)
        metrics.STORE_UP.set(1 if ok else 0)
        return ok

    async def _run(self) -> None:
        await self.servicer.set(STORE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        metrics.STORE_UP.set(1)
        while not self._stopped:
            await asyncio.sleep(self.interval)
            await self.check_once()
