"""Running the server: one process, or `--workers` processes sharing the port."""

from __future__ import annotations

import asyncio
import sys

from . import lifecycle
from .app import serve
from .config import Config
from .logs import route_stderr, setup_logging

SWITCH_INTERVAL = 0.0005  # seconds; see run()


def run(config: Config) -> int:
    setup_logging(config.log_level, route_stderr())  # every line JSON, gRPC core's too
    # The audit writer thread holds the GIL in bursts (SQLAlchemy, hashing); with the
    # default 5 ms switch interval a Check arriving mid-burst waits up to 5 ms for it.
    sys.setswitchinterval(SWITCH_INTERVAL)
    if config.workers > 1:
        from .workers import run_workers

        return run_workers(config)
    return lifecycle.finish(asyncio.run(serve(config)))  # threads wedged in the store: exit anyway
