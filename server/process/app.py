"""The running server: grpc.aio, health, reflection, JSON logs, graceful drain.

Health reports SERVING only after the store is open and policies are loaded, so a load
balancer never routes to a server that would fail its first calls; on SIGTERM/SIGINT it
turns NOT_SERVING first, then in-flight calls get `grace` seconds to finish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.engine.engine import Engine, PolicySet
from authz.policy import sealkey
from authz.v1 import authz_pb2, authz_pb2_grpc

from ..api import extauthz, reflection
from ..api.audited import AuditRpc, open_audit
from ..api.service import AuthzService, Store
from . import lifecycle
from .config import Config, policy_keys
from .logs import event
from .ops import Ops

if TYPE_CHECKING:  # aiohttp is imported only when the HTTP API is on
    from ..api.authzen.http import AuthzenApi

SERVICE_NAME = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].full_name
log = logging.getLogger("authz.server")
# Of the grace, in-flight calls get all but STOP_RESERVE seconds (at most half of it): the
# audit flush and closing the store must also end before a supervisor's SIGKILL.
STOP_RESERVE = 2.0
STOP_STEP = 0.1  # seconds a shutdown step gets at least, once the grace is spent

def open_store(url: str) -> Store:
    """The store behind the server (imported late: the store package is optional to import)."""
    from authz.store import open_store as _open

    store = _open(url)
    try:
        # A schema behind the code fails here, at start, not on the first request.
        store.require_current_schema()
    except BaseException:
        store.close()
        raise
    return store


class Server:
    """A started server; `port` is the bound port (useful with port 0)."""

    def __init__(self, config: Config, store_factory: Callable[[str], Store] = open_store) -> None:
        self.config = config
        self.store_factory = store_factory
        self.port = 0
        self.health = health.aio.HealthServicer()
        self._grpc: grpc.aio.Server | None = None
        self._store: Store | None = None
        self._audit: AuditRpc | None = None
        self._executor = ThreadPoolExecutor(max_workers=config.threads,
                                            thread_name_prefix="authz-worker")
        self.ops: Ops | None = None  # security, reload, health watcher, metrics (server/process/ops.py)
        self.authzen: AuthzenApi | None = None  # the AuthZEN HTTP API, when http_listen is set
        self.http_port = 0

    async def start(self) -> None:
        cfg = self.config
        self.ops = Ops(cfg, self.health, self._executor)
        options = self.ops.server_options()
        # gRPC turns SO_REUSEPORT on by default: a second server on a port in use would
        # start silently and split the traffic. Only sibling workers (run_workers, which
        # checked the port is free first) share one.
        options["options"] = [*options["options"],
                              ("grpc.so_reuseport", 1 if cfg.workers > 1 else 0)]
        self._grpc = self.ops.gated(grpc.aio.server(self._executor, **options))
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        service = AuthzService(self._executor, cfg.max_batch, inline=cfg.decide_inline)
        authz_pb2_grpc.add_AuthzServiceServicer_to_server(service, self._grpc)
        extauthz.add_to_server(self._grpc, service, self._executor)  # Envoy ext_authz
        reflection.enable(self._grpc, (SERVICE_NAME, extauthz.SERVICE_NAME, health.SERVICE_NAME))
        self.port = self.ops.bind(self._grpc)
        # Listen first so health probes get NOT_SERVING (not "connection refused")
        # while policies and the store load.
        await self._grpc.start()
        event(log, logging.INFO, "listening", listen=cfg.listen, port=self.port)
        if cfg.http_listen:  # AuthZEN over HTTP(S): same loop, engine, gate rules, audit
            from ..api.authzen.http import AuthzenApi

            self.authzen = AuthzenApi(cfg, service, self.ops.auth, self._executor)
            self.authzen.inflight = self.ops.inflight
            self.http_port = await self.authzen.start(reuse_port=cfg.workers > 1)
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        self._store = await loop.run_in_executor(self._executor, self.store_factory, cfg.db)
        sealkey.require(policy_keys(cfg))  # before any load; none: seals need no key
        policies = PolicySet(cfg.policy_dir)
        orgs = await loop.run_in_executor(self._executor, policies.warm) if cfg.warm else 0
        # What warm-up loaded lives as long as the process (each organization's index is
        # a few hundred objects): out of the collector's sight, a full collection walks
        # only what came later instead of every resident policy (seconds at 10,000).
        gc.freeze()
        self._audit = open_audit(cfg, self._store)
        service.ready(Engine(policies, self._store), self._store, self._audit)
        from ..api.migrate import start_migrations  # resumes unfinished jobs, starts the schedule

        self._migrations = start_migrations(service, self._store, policies)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.ops.start(policies, self._store, ("", SERVICE_NAME))
        event(log, logging.INFO, "serving", organizations=orgs, policy_dir=str(cfg.policy_dir),
                                   db=_redact(cfg.db),
                                   load_seconds=round(time.monotonic() - t0, 3))

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let in-flight ones finish, flush the audit trail and close the
        store, all within `grace` seconds (in-flight calls get all but STOP_RESERVE)."""
        grace = self.config.grace if grace is None else grace
        deadline = time.monotonic() + grace
        drain = grace - min(STOP_RESERVE, grace / 2)
        if self.ops is not None:
            await self.ops.stop()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._grpc is not None:
            event(log, logging.INFO, "draining", grace=grace, calls_get=round(drain, 3))
            if self.authzen is not None:  # both doors drain together
                await asyncio.gather(self._grpc.stop(drain), self.authzen.stop())
            else:
                await self._grpc.stop(drain)
        # What follows may block on the store: each step in a thread of its own, bounded by
        # what is left of the grace (at least STOP_STEP), never on the worker pool, whose
        # threads may all be waiting on a wedged database.
        def left() -> float:
            return max(deadline - time.monotonic(), STOP_STEP)

        audit, self._audit = self._audit, None
        if audit is not None:  # answered calls' entries go to the store before it closes;
            # entries not written by then are logged as lost, never acknowledged.
            await lifecycle.off_loop("audit", lambda: audit.close(left()), left() + STOP_STEP)
        migrations, self._migrations = getattr(self, "_migrations", None), None
        if migrations is not None:
            await lifecycle.off_loop("migrations", migrations.stop, left())
        store, self._store = self._store, None
        if store is not None:
            await lifecycle.off_loop("store", store.close, left())
        self._executor.shutdown(wait=False, cancel_futures=True)
        event(log, logging.INFO, "stopped")


def _redact(url: str) -> str:
    """Never log a database password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return scheme + sep + rest


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT, then drain; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    server = Server(config)
    loop.add_signal_handler(signal.SIGHUP, lambda: server.ops.on_sighup() if server.ops else None)
    try:
        await server.start()
    except Exception as exc:
        event(log, logging.ERROR, "start_failed", error=str(exc), exc_info=True)
        await server.stop(0)
        return 1
    await stop.wait()
    await server.stop()
    return 0


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    event(log, logging.INFO, "signal", signal=sig.name)
    stop.set()


