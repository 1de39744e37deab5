"""How long one request may still wait, and whether its caller is still there.

A store wait (for a `min_revision` not yet committed) runs in a worker thread; the
thread cannot be interrupted, so it must know when to give up by itself. The transport
sets a Budget for each request before calling into the domain (`use`), and every wait
in the request draws on it: all of a request's waits end by one deadline, fixed at the
first wait (min of the store's `revision_wait` and the call's own deadline), so a
CheckBatch of 1000 items waits once, not 1000 times. A caller that goes away cancels
the budget and the wait ends at its next poll, freeing the thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar


class Budget:
    """One request's waiting allowance (thread-safe; shared by the request's waits).

    Made for every call and almost never waited on (a decision from memory never waits),
    so the event a sleeping wait needs is made by the first sleep, not here (issue 13)."""

    __slots__ = ("_cancelled", "_event", "_lock", "_wait_until", "call_deadline")

    def __init__(self, seconds: float | None = None) -> None:
        # time.monotonic() at which the caller stops listening (None: no deadline)
        self.call_deadline = None if seconds is None else time.monotonic() + max(seconds, 0.0)
        self._cancelled = False
        self._event: threading.Event | None = None
        self._wait_until: float | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """The caller went away: every wait of this request ends at its next poll."""
        self._cancelled = True  # before the event is read: a sleep that makes the
        event = self._event  # event after this read sees the flag (see `sleep`)
        if event is not None:
            event.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def wait_until(self, longest: float) -> float:
        """The monotonic time by which this request's waits end: fixed at the first wait,
        at most `longest` seconds after it, never after the call's deadline."""
        with self._lock:
            if self._wait_until is None:
                until = time.monotonic() + longest
                if self.call_deadline is not None:
                    until = min(until, self.call_deadline)
                self._wait_until = until
            return self._wait_until

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False at once if the caller went away."""
        with self._lock:
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        # The event exists before the flag is read: a cancel either set the flag before
        # it read no event (seen here) or it found this event and set it (wait returns).
        if self._cancelled:
            return False
        return not event.wait(seconds)


_CURRENT: ContextVar[Budget | None] = ContextVar("authz_budget", default=None)


def current() -> Budget:
    """The running request's budget; a fresh unbounded one outside a request (CLI, tests)."""
    return _CURRENT.get() or Budget()


@contextlib.contextmanager
def use(budget: Budget) -> Iterator[Budget]:
    """Make `budget` the current one for the code run inside (in the worker thread)."""
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def start(seconds: float | None) -> Budget:
    """A new budget for the request running in this context (the transport's gate)."""
    budget = Budget(seconds)
    _CURRENT.set(budget)
    return budget
