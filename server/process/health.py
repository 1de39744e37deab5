"""Database reachability drives health: NOT_SERVING while the store is unreachable.

The store keeps answering from cached snapshots for a while when PostgreSQL goes away
(`max_staleness`), but a load balancer should still move traffic to a replica that can
reach it, and an operator should see it. A probe (`SELECT 1` on a connection the store
keeps for it: `Store.ping`) runs every
`interval` seconds in a prober thread of its own (a probe that has not returned within
`timeout` counts as unreachable); two states only, so flapping is visible in logs
as pairs of `store_unreachable` / `store_reachable` events. Recovery needs no restart:
the engine's pool reconnects (pre-ping) and the next probe turns health back on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
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
        self._halt = threading.Event()  # stops the prober thread
        self._since: float | None = None  # when the probe in progress started
        self._result: tuple[bool, str] = (True, "")
        self._seq = 0  # probes finished

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="authz-health")

    async def stop(self) -> None:
        """Stop probing; health is left as it is (the drain sets NOT_SERVING itself)."""
        self._stopped = True
        self._halt.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check_once(self) -> bool:
        """One probe through the worker pool, health updated to match."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self.executor, self.probe), self.timeout)
            ok, error = True, ""
        except Exception as exc:  # any failure to read counts as unreachable
            ok, error = False, _error(exc)
        await self._apply(ok, error)
        return ok

    async def _apply(self, ok: bool, error: str) -> None:
        if self._stopped:
            return
        if ok != self.reachable:
            self.reachable = ok
            status = (health_pb2.HealthCheckResponse.SERVING if ok
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in (*self.services, STORE_SERVICE):
                await self.servicer.set(name, status)
            event(log, logging.INFO if ok else logging.WARNING,
                  "store_reachable" if ok else "store_unreachable", error=error)
        metrics.STORE_UP.set(1 if ok else 0)

    def _probe_loop(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        """The prober thread: a probe every interval, its outcome left for the loop. No
        executor hop per probe, and the loop is woken only when the outcome differs from
        the health it has set (an idle server's CPU, issue 13)."""
        while not self._halt.wait(self.interval):
            self._since = time.monotonic()
            try:
                self.probe()
                result = (True, "")
            except Exception as exc:  # any failure to read counts as unreachable
                result = (False, _error(exc))
            self._since = None
            self._result = result
            self._seq += 1
            if result[0] != self.reachable:  # read racily: a miss waits for the next probe
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        await self.servicer.set(STORE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        metrics.STORE_UP.set(1)
        wake = asyncio.Event()
        threading.Thread(target=self._probe_loop, args=(asyncio.get_running_loop(), wake),
                         name="authz-health-probe", daemon=True).start()
        seen = 0
        while not self._stopped:
            # Asleep until the prober reports a change, or until a probe in flight would
            # be late (a probe starting while no probe is in flight is seen in flight at
            # the next wake, at most `timeout` later, and waited for to its own deadline:
            # a stuck probe counts as unreachable `timeout` after it started, as before).
            since = self._since
            now = time.monotonic()
            late = since is not None and now - since > self.timeout
            pause = self.timeout if since is None or late else since + self.timeout - now
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), pause + 0.01)
            wake.clear()
            since = self._since
            if since is not None and time.monotonic() - since > self.timeout:
                await self._apply(False, f"the probe has not returned in {self.timeout:g} s")
            elif self._seq != seen:
                seen = self._seq
                await self._apply(*self._result)


def _error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
