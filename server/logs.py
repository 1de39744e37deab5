"""Structured logs: one JSON object per line on stderr, fields passed as keywords.

`event(log, level, "name", key=value, ...)` keeps fields under one LogRecord attribute so
a field called `module` or `name` can never clash with LogRecord's own (stdlib raises).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

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


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Casbin logs whole policies (alembic its set-up) at INFO; grpc's event loop chatters at DEBUG.
    logging.getLogger("casbin").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("grpc").setLevel(max(logging.INFO, logging.getLevelName(level)))


def event(log: logging.Logger, level: int, name: str, exc_info: bool = False,
          **fields: Any) -> None:
    """Log one event with its fields (cheap when the level is off)."""
    if log.isEnabledFor(level):
        log.log(level, name, extra={"fields": fields}, exc_info=exc_info)
