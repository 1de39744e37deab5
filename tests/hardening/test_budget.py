"""A call's wait budget (authz.budget): a caller that goes away ends its waits, whenever
it goes, and a call that never waits costs no event (issue 13)."""

from __future__ import annotations

import threading

from authz.budget import Budget


def test_a_cancel_before_the_first_wait_ends_it_at_once() -> None:
    budget = Budget(60.0)
    budget.cancel()
    assert budget.cancelled
    assert budget.sleep(60.0) is False  # not a minute's sleep


def test_a_cancel_during_a_wait_wakes_every_waiter() -> None:
    budget = Budget(None)
    results: list[bool] = []
    started = threading.Barrier(3)

    def wait() -> None:
        started.wait()
        results.append(budget.sleep(600.0))

    threads = [threading.Thread(target=wait) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait()
    while budget._event is None:  # the first sleep made the event
        threading.Event().wait(0.001)
    budget.cancel()
    for t in threads:
        t.join(60.0)
        assert not t.is_alive()  # woken, not left sleeping ten minutes
    assert results == [False, False]


def test_an_uncancelled_sleep_runs_its_course() -> None:
    budget = Budget(None)
    assert budget.sleep(0.001) is True
    assert not budget.cancelled
