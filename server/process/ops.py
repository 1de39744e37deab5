"""Wires the hardening parts into a Server, so that app.py changes by a few lines only.

`Ops` owns: the authenticator and its gate (wrapped around every handler), the listening ports (plaintext,
TLS, mTLS, the token port), the policy and callers-file reloader, the database health
watcher and the /metrics endpoint. Order matters and lives here: configuration is
checked before anything binds; watchers start only after the server is ready.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health

from authz.engine.engine import PolicySet

from ..edge import auth as security
from ..edge import gate as edge
from ..edge import resources
from . import metrics
from .config import Config, ConfigError
from .health import HealthWatcher
from .logs import event
from .reload import PolicyReloader

log = logging.getLogger("authz.server")


class Ops:
    """The security and operations side of one server."""

    def __init__(self, cfg: Config, servicer: health.aio.HealthServicer, executor: Executor) -> None:
        security.check_config(cfg)
        self.cfg = cfg
        self.servicer = servicer
        self.executor = executor
        self.auth = security.Authenticator(
            security.Callers.load(Path(cfg.callers_file)) if cfg.callers_file else None)
        self._callers_sig = _sig(cfg.callers_file)
        self.ports: list[int] = []
        # request bytes held by calls in progress, over every door (resources.py)
        self.inflight = resources.InFlight(cfg.max_inflight_bytes)
        self.gate = edge.Gate(self.auth, self.inflight)
        self.reloader: PolicyReloader | None = None
        self.watcher: HealthWatcher | None = None
        self._metrics: metrics.MetricsServer | None = None

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments for grpc.aio.server: message size and resource limits
        (server/edge/resources.py). No interceptor: the gate wraps each handler (`gated`)."""
        cfg = self.cfg
        return {"maximum_concurrent_rpcs": cfg.max_calls,
                "options": [("grpc.max_receive_message_length", cfg.max_message_bytes),
                            *resources.grpc_options(cfg, resources.fit_connections(cfg))]}

    def gated(self, server: grpc.aio.Server) -> edge.GatedServer:
        """The server as the services may see it: whatever registers is behind the gate."""
        return edge.GatedServer(server, self.gate)

    def bind(self, server: grpc.aio.Server) -> int:
        """Add every configured port; returns the main one."""
        for address, creds in security.listen_ports(self.cfg):
            try:
                port = (server.add_secure_port(address, creds) if creds is not None
                        else server.add_insecure_port(address))
            except RuntimeError:  # gRPC's "Failed to bind"
                port = 0
            if port == 0:
                raise OSError(f"cannot listen on {address}: in use by another process, or "
                              "not an address of this machine")
            self.ports.append(port)
        event(log, logging.INFO, "security", tls=bool(self.cfg.tls_cert),
              mtls=bool(self.cfg.tls_client_ca), authentication=self.auth.enabled,
              token_port=self.ports[1] if len(self.ports) > 1 else None)
        return self.ports[0]

    def start(self, policies: PolicySet, store: Any, services: tuple[str, ...]) -> None:
        """Start reloading, watching the database and serving metrics (server is ready)."""
        cfg = self.cfg
        self.reloader = PolicyReloader(policies, self.executor, self.servicer,
                                       cfg.reload_interval, extra=self._reload_callers,
                                       extra_sig=lambda: _sig(cfg.callers_file))
        self.reloader.start()
        if cfg.health_interval > 0 and hasattr(store, "revision"):
            probe = getattr(store, "ping", None) or (lambda: store.revision("__health__"))
            self.watcher = HealthWatcher(probe, self.servicer,
                                         services, self.executor, cfg.health_interval)
            self.watcher.start()
        if cfg.metrics_listen:
            # Off loopback over HTTPS with the server's certificate (security.check_metrics).
            tls = (cfg.tls_cert, cfg.tls_key) if not security.is_loopback(cfg.metrics_listen) \
                else ("", "")
            self._metrics = metrics.MetricsServer(cfg.metrics_listen, *tls)
            event(log, logging.INFO, "metrics", listen=cfg.metrics_listen, port=self._metrics.port)

    def on_sighup(self) -> None:
        if self.reloader is not None:
            self.reloader.trigger()

    async def stop(self) -> None:
        if self.reloader is not None:
            await self.reloader.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        if self._metrics is not None:
            self._metrics.close()

    def _reload_callers(self, force: bool) -> None:
        """Token rotation without a restart; a broken file keeps the last good callers."""
        path = self.cfg.callers_file
        sig = _sig(path)
        if not path or (sig == self._callers_sig and not force):
            return
        self._callers_sig = sig
        try:
            self.auth.callers = security.Callers.load(Path(path))
        except ConfigError as exc:
            metrics.RELOAD_FAILURES.labels("callers_file").inc()
            event(log, logging.ERROR, "callers_reload_failed", error=str(exc))
            return
        event(log, logging.INFO, "callers_reloaded", path=path)


def _sig(path: str) -> tuple[int, int, int] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
