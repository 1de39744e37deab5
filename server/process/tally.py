"""Per-call metrics as plain counts, added to the Prometheus metrics in bulk (issue 13).

Updating a labelled Prometheus metric costs a label lookup and a lock per update; the
gate used to make four per Check (~25 µs). Here a call is one tuple appended under one
uncontended lock; sorted into counts and buckets, they go into the real metrics once a second while calls
arrive (a timer armed by the first call after a flush, so an idle server runs none) and
before every scrape of this process (`metrics.BEFORE_SCRAPE`), so /metrics is never
behind. With several workers (prometheus_client's multiprocess files, read by whichever
process is scraped) every call is added at once, as before.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import threading
from collections import Counter
from typing import Any

from authz.v1 import authz_pb2 as pb

from . import metrics

FLUSH_EVERY = 1.0  # seconds
#: A CheckBatch's decisions by (allowed, reason): set by the servicer as it answers, read
#: by the gate (the same task), so 1,000 answers are not read back to be counted.
BATCH_COUNTS: contextvars.ContextVar[Counter[tuple[bool, int]] | None] = contextvars.ContextVar(
    "authz_batch_counts", default=None)
_BOUNDS = metrics._LATENCY_BUCKETS
#: reason enum value -> the label metrics use ("granted", "not_migrated", ...)
_REASONS = {v.number: v.name.removeprefix("REASON_").lower()
            for v in pb.Reason.DESCRIPTOR.values}


class Tally:
    """Counts of answered RPCs, their latencies (by histogram bucket) and decisions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (method, seconds, decision counts or None, allowed, reason) per answered call
        self._calls: list[tuple[str, float, Counter[tuple[bool, int]] | None, bool, int]] = []
        self._armed = False
        self.immediate = metrics.multiprocess_dir() is not None or metrics.REGISTRY is None
        metrics.BEFORE_SCRAPE.append(self.flush)

    def answered(self, method: str, seconds: float, decisions: Counter[tuple[bool, int]] | None
                 = None, allowed: bool = False, reason: int = -1) -> None:
        """An RPC answered OK in `seconds`; its decisions as counts, or one (allowed, reason).
        A call is one tuple appended under the lock; `flush` sorts them into buckets."""
        with self._lock:
            self._calls.append((method, seconds, decisions, allowed, reason))
            armed, self._armed = self._armed, True
        if self.immediate:
            self.flush()
        elif not armed:
            try:
                asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)
            except RuntimeError:  # no event loop (a synchronous caller): add them now
                self.flush()

    def flush(self) -> None:
        """Add what was counted to the Prometheus metrics."""
        with self._lock:
            calls, self._calls = self._calls, []
            self._armed = False
        rpcs: Counter[str] = Counter()
        decisions: Counter[tuple[bool, int]] = Counter()
        buckets: dict[str, list[int]] = {}
        sums: dict[str, float] = {}
        bisect_left = bisect.bisect_left
        for method, seconds, counts, allowed, reason in calls:
            rpcs[method] += 1
            b = buckets.get(method)
            if b is None:
                b = buckets[method] = [0] * (len(_BOUNDS) + 1)
                sums[method] = 0.0
            b[bisect_left(_BOUNDS, seconds)] += 1
            sums[method] += seconds
            if counts is not None:
                decisions.update(counts)
            elif reason >= 0:
                decisions[(allowed, reason)] += 1
        for method, n in rpcs.items():
            metrics.RPCS.labels(method, "OK").inc(n)
        for method, counts_ in buckets.items():
            _add_observations(metrics.DECISION_SECONDS.labels(method), counts_, sums[method])
        for (allowed, reason), n in decisions.items():
            metrics.DECISIONS.labels("allow" if allowed else "deny",
                                     _REASONS.get(reason, str(reason))).inc(n)


def _add_observations(histogram: Any, counts: list[int], total: float) -> None:
    """What `observe` would have done for each value, in one step per bucket (the last
    count is above every bound: only in +Inf)."""
    child_buckets = getattr(histogram, "_buckets", None)
    if child_buckets is None:  # no prometheus_client: a no-op metric
        return
    for i, n in enumerate(counts):
        if n:
            child_buckets[i].inc(n)
    histogram._sum.inc(total)


TALLY = Tally()
