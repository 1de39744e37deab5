"""Structured logs: one JSON object per line on stderr, fields passed as keywords.

`event(log, level, "name", key=value, ...)` keeps fields under one LogRecord attribute so
a field called `module` or `name` can never clash with LogRecord's own (stdlib raises).

gRPC core (C++) writes its own lines to file descriptor 2, past Python's logging. So
that every line on stderr is JSON, `route_stderr` puts a pipe on fd 2: a thread reads it
and passes JSON lines through while wrapping any other line as
{"logger": "grpc.core", "event": "native_log", "line": ...}. GRPC_VERBOSITY (default
ERROR here) and GRPC_TRACE still choose what core says; absl's pre-init notice is
wrapped like the rest.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from typing import IO, Any

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: machines parse it, `jq` reads it."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_") and key != "fields":
                out[key] = value
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _stamp(created: float) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + f".{int(created * 1000) % 1000:03d}Z")


def native_line(line: str) -> str:
    """A line read from fd 2: JSON passes through, anything else is wrapped."""
    text = line.rstrip("\n")
    if text.startswith("{") and text.endswith("}"):
        return text
    return json.dumps({"ts": _stamp(time.time()), "level": _native_level(text),
                       "logger": "grpc.core", "event": "native_log", "line": text})


def _native_level(text: str) -> str:
    """absl/gRPC prefixes a line with its severity letter (E1129 12:00:00 ...)."""
    return {"E": "error", "W": "warning", "I": "info", "F": "critical"}.get(
        text[:1], "info") if text[1:2].isdigit() else "warning"


_routed: IO[str] | None = None


def route_stderr() -> IO[str]:
    """Send whatever is written to fd 2 through `native_line`; returns the stream to write
    JSON to (the original stderr). Idempotent within a process."""
    global _routed
    if _routed is not None:
        return _routed
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no fd 2 to route (embedded use): log to what there is
        _routed = sys.stderr
        return _routed
    out = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
    _routed = out

    def pump() -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                out.write(native_line(line) + "\n")

    thread = threading.Thread(target=pump, name="authz-native-log", daemon=True)
    thread.start()

    def drain() -> None:
        """At exit: give fd 2 back, so the pipe ends and its last lines are written."""
        try:
            os.dup2(original, 2)
        except OSError:
            return
        thread.join(1.0)

    atexit.register(drain)
    sys.stderr = out  # Python's own writes (warnings, tracebacks) skip the pipe
    return out


def setup_logging(level: str, stream: IO[str] | None = None) -> None:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Casbin logs whole policies (alembic its set-up) at INFO; grpc's event loop chatters at DEBUG.
    logging.getLogger("casbin").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("grpc").setLevel(max(logging.INFO, logging.getLevelName(level)))


class Throttle:
    """At most one summary per `interval` seconds of a frequent event (unauthenticated
    calls): `note()` returns the fields to log at INFO (the count since the last
    summary), or None while the interval runs; every occurrence is still logged at DEBUG."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last = -interval
        self._count = 0
        self._by: dict[str, int] = {}
        self._lock = threading.Lock()

    def note(self, key: str) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            self._count += 1
            self._by[key] = self._by.get(key, 0) + 1
            if now - self._last < self.interval:
                return None
            out = {"count": self._count, "by_method": self._by,
                   "interval_s": self.interval}
            self._last, self._count, self._by = now, 0, {}
            return out


def event(log: logging.Logger, level: int, name: str, exc_info: bool = False,
          **fields: Any) -> None:
    """Log one event with its fields (cheap when the level is off)."""
    if log.isEnabledFor(level):
        log.log(level, name, extra={"fields": fields}, exc_info=exc_info)
