"""Resource limits: what many connections, calls and large requests may hold at once.

One call is bounded elsewhere (message size, text and item counts, deadlines); these
bound the sum, so that load or an attacker gets RESOURCE_EXHAUSTED (clients back off and
retry) instead of the process running out of file descriptors or memory:

- connections per listening port (gRPC's max_allowed_incoming_connections: beyond it a
  new connection is closed at once, the listener keeps accepting), with the process's
  file-descriptor limit raised to fit them;
- HTTP/2 streams per connection; calls in progress in the process (gRPC answers those
  beyond RESOURCE_EXHAUSTED itself; the AuthZEN port counts its own, 429);
- idle connections closed after `connection_idle`, every connection asked to reconnect
  after `connection_age` (spreads load after a deploy, frees stale peers), keepalive
  pings from clients limited (max_ping_strikes) and dead peers found by our own pings;
- request bytes held by calls in progress (`InFlight`): a request that would take the
  sum past `max_inflight_bytes` is refused before it is even parsed.
"""

from __future__ import annotations

import logging
import resource
import threading
from typing import Any

from ..process.config import Config
from ..process.logs import event

log = logging.getLogger("authz.server")
FD_RESERVE = 256  # descriptors kept for the store, files, the metrics and HTTP ports


def grpc_options(cfg: Config, connections: int) -> list[tuple[str, Any]]:
    """Channel arguments for grpc.aio.server."""
    return [
        ("grpc.max_allowed_incoming_connections", connections),
        ("grpc.max_concurrent_streams", cfg.max_streams),
        ("grpc.max_connection_idle_ms", int(cfg.connection_idle * 1000)),
        ("grpc.max_connection_age_ms", int(cfg.connection_age * 1000)),
        ("grpc.max_connection_age_grace_ms", 60_000),
        ("grpc.keepalive_time_ms", 60_000),  # find peers that vanished without a FIN
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_ping_strikes", 2),  # a client pinging too often is disconnected
    ]


def fit_connections(cfg: Config) -> int:
    """The connection cap per port, after raising the descriptor limit to fit it (a cap
    the limit cannot hold is lowered, and logged: accept() must never hit EMFILE)."""
    ports = 1 + bool(cfg.token_listen) + bool(cfg.http_listen)
    want = cfg.max_connections * ports + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= want:
        return cfg.max_connections
    fitted = max((soft - FD_RESERVE) // ports, 1)
    event(log, logging.WARNING, "max_connections_lowered", configured=cfg.max_connections,
          used=fitted, nofile=soft)
    return fitted


class InFlight:
    """Bytes of requests held by calls in progress, against one process-wide budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def fits(self, n: int) -> bool:
        """Whether `n` more bytes could be taken now (a cheap look before parsing)."""
        return self.held + n <= self.limit

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n
