"""`authz serve --workers N`: N server processes sharing one port and one store.

One Python process decides on one core (the GIL), so throughput beyond a core needs
processes. Each worker is a complete server (`app.serve`) started with the
"grpc.so_reuseport" option; the kernel spreads incoming connections across them. They
share the store (the database is the source of truth, snapshots are per process) and the
compiled policy folder. The parent only starts the workers, forwards SIGTERM, SIGINT and
SIGHUP to them, and exits with the worst exit code once they have all stopped; a worker
that dies takes the others down, so a supervisor sees the failure instead of a server
quietly running at reduced capacity. The port is checked free before the workers start
(only they share it), and each worker dies with its parent (server/process/lifecycle.py).

Metrics: the parent gives the run a fresh PROMETHEUS_MULTIPROC_DIR before the workers
start (they inherit it), so every worker counts into files there and the one serving
/metrics reports the sum (server/process/metrics.py); the folder is removed when the run ends,
or, when the parent was killed with SIGKILL, by the next run's start (named by the parent's
pid and start time, a folder no live process owns is stale).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import time
from types import FrameType

from .config import Config, ConfigError
from .lifecycle import die_with_parent, port_free
from .logs import event, setup_logging
from .metrics import MULTIPROC_ENV, new_multiprocess_dir

log = logging.getLogger("authz.server")


def _worker(config: Config, parent: int) -> None:
    from .app import serve

    die_with_parent(parent)  # a parent killed with SIGKILL leaves no orphan serving
    setup_logging(config.log_level)
    raise SystemExit(asyncio.run(serve(config)))


def worker_configs(config: Config) -> list[Config]:
    """The configuration of each worker: one /metrics endpoint (the first worker's), since
    the metrics port cannot be shared. A port of 0 would give each worker its own port."""
    port = config.listen.rpartition(":")[2]
    if not port.isdigit() or int(port) == 0:
        raise ConfigError(f"--workers {config.workers} needs a fixed port in listen "
                          f"(found {config.listen!r})")
    http_port = config.http_listen.rpartition(":")[2]
    if config.http_listen and (not http_port.isdigit() or int(http_port) == 0):
        raise ConfigError(f"--workers {config.workers} needs a fixed port in http_listen "
                          f"(found {config.http_listen!r})")
    return [config if i == 0 else dataclasses.replace(config, metrics_listen="")
            for i in range(config.workers)]


def run_workers(config: Config) -> int:
    """Start the workers, relay signals, wait; returns the process exit code."""
    try:
        configs = worker_configs(config)
    except ConfigError as exc:
        event(log, logging.ERROR, "start_failed", error=str(exc))
        return 2
    # The workers share their ports (SO_REUSEPORT) with each other only: a port another
    # process already holds is refused here, before any worker joins it.
    for listen in (config.listen, config.token_listen, config.http_listen):
        problem = port_free(listen) if listen else ""
        if problem:
            event(log, logging.ERROR, "start_failed", error=problem)
            return 1
    path, stale = new_multiprocess_dir()
    if stale:
        event(log, logging.INFO, "metrics_dirs_removed", folders=[str(p) for p in stale],
              why="left by runs whose parent is gone (killed with SIGKILL)")
    folder = str(path)
    os.environ[MULTIPROC_ENV] = folder  # inherited by the spawned workers
    try:
        return _run(configs, config.listen, folder)
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _run(configs: list[Config], listen: str, metrics_dir: str) -> int:
    ctx = multiprocessing.get_context("spawn")  # no gRPC state is ever forked
    procs = [ctx.Process(target=_worker, args=(cfg, os.getpid()), name=f"authz-worker-{i}")
             for i, cfg in enumerate(configs)]
    stopping = False

    def relay(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = stopping or sig != signal.SIGHUP
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, relay)
    # A worker still starting has no handler of its own yet, and SIGHUP's default action
    # ends a process: the workers are started with SIGHUP ignored (an ignored signal stays
    # ignored across exec) until their event loop takes it over (app.serve). A reload
    # asked for while they start is moot: they read the policy folder as they start.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for p in procs:
        p.start()
    signal.signal(signal.SIGHUP, relay)
    event(log, logging.INFO, "workers", count=len(procs), listen=listen,
          pids=[p.pid for p in procs], metrics_dir=metrics_dir)
    while any(p.exitcode is None for p in procs):
        if not stopping and any(p.exitcode not in (None, 0) for p in procs):
            event(log, logging.ERROR, "worker_died", exitcodes=[p.exitcode for p in procs])
            relay(signal.SIGTERM, None)
        time.sleep(0.2)
    return max(_exit_code(p.exitcode, stopping) for p in procs)


def _exit_code(code: int | None, stopping: bool) -> int:
    """A worker's share of the parent's exit code. Asked to stop, a worker still starting
    ends by the relayed signal itself (its handler is not installed yet): that is the stop
    that was asked for, not a failure."""
    if stopping and code in (-signal.SIGTERM, -signal.SIGINT):
        return 0
    return abs(code or 0)
