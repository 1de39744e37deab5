"""Per-call metrics as plain counts, added to the Prometheus metrics in bulk (issue 13).

Updating a labelled Prometheus metric costs a label lookup and a lock per update; the
gate used to make four per Check (~25 µs). Here a call is a few dict increments under
one uncontended lock; the counts go into the real metrics once a second while calls
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
        self._rpcs: Counter[str] = Counter()
        self._decisions: Counter[tuple[bool, int]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._armed = False
        self.immediate = metrics.multiprocess_dir() is not None or metrics.REGISTRY is None
        metrics.BEFORE_SCRAPE.append(self.flush)

    def answered(self, method: str, seconds: float, decisions: Counter[tuple[bool, int]] | None
                 = None, allowed: bool = False, reason: int = -1) -> None:
        """An RPC answered OK in `seconds`; its decisions as counts, or one (allowed, reason)."""
        i = bisect.bisect_left(_BOUNDS, seconds)
        with self._lock:
            self._rpcs[method] += 1
            buckets = self._buckets.get(method)
            if buckets is None:
                buckets = self._buckets[method] = [0] * (len(_BOUNDS) + 1)
            buckets[i] += 1
            self._sums[method] = self._sums.get(method, 0.0) + seconds
            if decisions is not None:
                self._decisions.update(decisions)
            elif reason >= 0:
                self._decisions[(allowed, reason)] += 1
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
            rpcs, self._rpcs = self._rpcs, Counter()
            decisions, self._decisions = self._decisions, Counter()
            buckets, self._buckets = self._buckets, {}
            sums, self._sums = self._sums, {}
            self._armed = False
        for method, n in rpcs.items():
            metrics.RPCS.labels(method, "OK").inc(n)
        for method, counts in buckets.items():
            _add_observations(metrics.DECISION_SECONDS.labels(method), counts, sums[method])
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
