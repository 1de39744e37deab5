"""Prometheus metrics, the hooks other parts call, and optional OpenTelemetry spans.

One process-wide registry (not prometheus_client's default, so tests that start several
servers in one process never collide and nothing else leaks in). Every label is a
bounded set: RPC method, status code, decision outcome and reason, organization only
for reload failures (a failing organization is rare and worth naming).

The hooks (`audit_queue_depth`, `audit_dropped`, `migration_jobs`) are plain functions so
the audit and migration code can report without knowing whether metrics are served.
If prometheus_client is missing they do nothing: metrics must never stop decisions.

With `--workers N` every worker counts into prometheus_client's multiprocess files (the
parent sets PROMETHEUS_MULTIPROC_DIR to a folder of its own for the run, and removes it
at exit); the worker serving /metrics then reports the sum over all workers, and process
metrics (CPU, memory, open files) per worker with a `pid` label. Gauges say how they
combine across workers (`multiprocess_mode`); a single process ignores that.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("authz.server")

try:
    import prometheus_client as _prom
except ImportError:  # pragma: no cover - prometheus_client is a dependency
    _prom = None  # type: ignore[assignment]


class _Noop:
    """Stands in for a metric when prometheus_client is not installed."""

    def labels(self, *args: Any, **kw: Any) -> _Noop:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY: Any = _prom.CollectorRegistry() if _prom is not None else None
#: Called before every scrape of REGISTRY (server/process/tally.py adds its per-call counts).
BEFORE_SCRAPE: list[Callable[[], None]] = []


class _BeforeScrape:
    """Registered first, so its collect runs before any metric is read."""

    def collect(self) -> Iterable[Any]:
        for hook in BEFORE_SCRAPE:
            hook()
        return []


if REGISTRY is not None:
    REGISTRY.register(_BeforeScrape())
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _metric(kind: str, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    if _prom is None:
        return _Noop()
    return getattr(_prom, kind)(name, doc, labels, registry=REGISTRY, **kw)


DECISION_SECONDS = _metric("Histogram", "authz_decision_duration_seconds",
                           "Time to answer a Check or CheckBatch, as the server sees it.",
                           ("method",), buckets=_LATENCY_BUCKETS)
DECISIONS = _metric("Counter", "authz_decisions_total", "Decisions made, by outcome and reason.",
                    ("outcome", "reason"))
RPCS = _metric("Counter", "authz_rpcs_total", "RPCs answered, by method and status code.",
               ("method", "code"))
AUTH_FAILURES = _metric("Counter", "authz_auth_failures_total",
                        "Calls refused at the gate: unauthenticated or permission denied.",
                        ("code",))
AUDIT_QUEUE_DEPTH = _metric("Gauge", "authz_audit_queue_depth",
                            "Audit records waiting in the batched writer's queue.",
                            multiprocess_mode="livesum")
AUDIT_DROPPED = _metric("Counter", "authz_audit_dropped_total",
                        "Audit records dropped because the queue was full (never silent).")
AUDIT_QUARANTINED = _metric("Counter", "authz_audit_quarantined_total",
                            "Audit records the store refused, kept apart in the quarantine "
                            "(the rest of their batch written; shown by VerifyAudit).")
AUDIT_LOG_SEGMENTS_LOST = _metric(
    "Counter", "authz_audit_log_segments_lost_total",
    "Live audit log segments found deleted or renamed under the server (their unshipped "
    "entries copied back from the open file; event audit_log_segment_lost).")
AUDIT_LOG_LOST_BYTES = _metric(
    "Counter", "authz_audit_log_lost_bytes_total",
    "Bytes of audit entries in a removed segment that could not be copied back (their "
    "strict calls failed UNAVAILABLE; batched ones were answered already).")
RELOADS = _metric("Counter", "authz_policy_reloads_total",
                  "Organizations whose policy was reloaded from disk.")
RELOAD_FAILURES = _metric("Counter", "authz_policy_reload_failures_total",
                          "Policy reloads rejected (last good revision kept), by organization.",
                          ("org_id",))
RELOAD_FAILING = _metric("Gauge", "authz_policy_reload_failing",
                         "1 while an organization's policy on disk is broken and an older "
                         "revision serves.", ("org_id",), multiprocess_mode="livemax")
MIGRATION_JOBS = _metric("Gauge", "authz_migration_jobs", "Migration jobs by state.", ("state",),
                         multiprocess_mode="livemax")
MIGRATION_WATCH_READS = _metric("Counter", "authz_migration_watch_reads_total",
                                "Store reads feeding WatchMigrationJob streams (one per "
                                "watched job per tick, shared by all its streams).")
STORE_UP = _metric("Gauge", "authz_store_up", "1 when the last database probe succeeded.",
                   multiprocess_mode="livemin")


# --- hooks for the audit and migration code -----------------------------------------

def audit_queue_depth(n: int) -> None:
    """The batched audit writer's queue length now."""
    AUDIT_QUEUE_DEPTH.set(n)


def audit_dropped(n: int = 1) -> None:
    """Audit records lost to a full queue (the configured overflow policy said drop)."""
    AUDIT_DROPPED.inc(n)


def audit_quarantined(n: int = 1) -> None:
    """Audit records the store refused (poison), quarantined instead of written."""
    AUDIT_QUARANTINED.inc(n)


def audit_log_lost(segments: int, lost_bytes: int) -> None:
    """Audit log segments removed under the server, and the bytes not copied back."""
    AUDIT_LOG_SEGMENTS_LOST.inc(segments)
    AUDIT_LOG_LOST_BYTES.inc(lost_bytes)


def migration_jobs(state: str, n: int) -> None:
    """How many migration jobs are in `state` (queued, running, done, failed)."""
    MIGRATION_JOBS.labels(state).set(n)


# --- exposition -----------------------------------------------------------------------

MULTIPROC_PREFIX = "authz-metrics-"
_OWNED = re.compile(re.escape(MULTIPROC_PREFIX) + r"(\d+)-(\d+)-")


def _start_time(pid: int) -> str | None:
    """A process's start time (/proc/PID/stat field 22, clock ticks since boot): with the
    pid it names one process for good, since pids are reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def new_multiprocess_dir(root: Path | None = None) -> tuple[Path, list[Path]]:
    """A fresh folder for this run's workers (`--workers`), named by this process's pid
    and start time, and the folders of earlier runs removed first (see below)."""
    base = root or Path(tempfile.gettempdir())
    removed = remove_stale_multiprocess_dirs(base)
    pid = os.getpid()
    folder = tempfile.mkdtemp(prefix=f"{MULTIPROC_PREFIX}{pid}-{_start_time(pid)}-", dir=base)
    return Path(folder), removed


def remove_stale_multiprocess_dirs(root: Path) -> list[Path]:
    """Folders left by runs whose parent is gone: a parent killed with SIGKILL removes
    nothing, and each run leaves a file per worker and metric. A folder whose name's pid
    and start time no live process has is removed; one of a run still going (or another
    user's, or not named so) is left alone."""
    removed = []
    for path in root.glob(f"{MULTIPROC_PREFIX}*"):
        owner = _OWNED.match(path.name)
        if owner is None:
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue  # a symlink planted in a shared /tmp is never followed
        if _start_time(int(owner.group(1))) == owner.group(2):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def multiprocess_dir() -> Path | None:
    """The folder workers count into, when this run has several."""
    folder = os.environ.get(MULTIPROC_ENV)
    return Path(folder) if folder else None


def exposition_registry() -> Any:
    """What /metrics reports: this process's registry plus its process metrics, or, with
    several workers, the sum over all workers' files plus each worker's process metrics."""
    folder = multiprocess_dir()
    if folder is None:
        if not getattr(REGISTRY, "_authz_process", False):
            _prom.ProcessCollector(registry=REGISTRY)
            REGISTRY._authz_process = True
        return REGISTRY
    from prometheus_client import multiprocess

    registry = _prom.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    registry.register(WorkerProcesses(folder))
    return registry


class WorkerProcesses:
    """process_* metrics of every worker counting into `folder`, labelled by pid (the pids
    are in the names of the files prometheus_client writes there); read at scrape time,
    so idle workers spend nothing on it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pids(self) -> list[int]:
        found = {int(m.group(1)) for f in os.listdir(self.folder)
                 if (m := re.search(r"_(\d+)\.db$", f))}
        return sorted(pid for pid in found if Path(f"/proc/{pid}").exists())

    def collect(self) -> Iterable[Any]:
        merged: dict[str, Any] = {}
        for pid in self.pids():
            collector = _prom.ProcessCollector(pid=_const(pid), registry=None)
            for family in collector.collect():
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = _prom.Metric(family.name, family.documentation,
                                                             family.type)
                for sample in family.samples:
                    out.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(merged.values())


def _const(pid: int) -> Any:
    return lambda: pid


def render() -> bytes:
    """The text exposition format (what /metrics returns)."""
    if _prom is None:
        return b""
    out: bytes = _prom.generate_latest(exposition_registry())
    return out


class MetricsServer:
    """/metrics over HTTP on `listen` (host:port) in a daemon thread."""

    def __init__(self, listen: str, certfile: str = "", keyfile: str = "") -> None:
        """HTTPS when `certfile` and `keyfile` are given (off loopback the server's own
        certificate, or allow_insecure: security.check_metrics)."""
        if _prom is None:
            raise RuntimeError("metrics_listen is set but prometheus_client is not installed")
        host, _, port = listen.rpartition(":")
        self._server, self._thread = _prom.start_http_server(
            int(port), host.strip("[]") or "127.0.0.1", registry=exposition_registry(),
            certfile=certfile or None, keyfile=keyfile or None)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- tracing --------------------------------------------------------------------------

def _tracer() -> Any | None:
    """An OpenTelemetry tracer if the package is installed and a provider is configured."""
    try:
        trace = importlib.import_module("opentelemetry.trace")
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    # The API's default provider is a proxy that records nothing: no tracer configured.
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        return None
    return provider.get_tracer("authz.server")


_TRACER: Any | None = None
_TRACER_CHECKED = False


def tracing() -> bool:
    """Whether spans are recorded (a tracer is configured); checked once per process."""
    global _TRACER, _TRACER_CHECKED
    if not _TRACER_CHECKED:
        _TRACER, _TRACER_CHECKED = _tracer(), True
    return _TRACER is not None


@contextlib.contextmanager
def span(name: str, **attributes: str) -> Iterator[None]:
    """A span around an RPC when tracing is configured; free otherwise."""
    global _TRACER, _TRACER_CHECKED
    if not _TRACER_CHECKED:
        _TRACER, _TRACER_CHECKED = _tracer(), True
    if _TRACER is None:
        yield
        return
    with _TRACER.start_as_current_span(name, attributes=attributes):
        yield
