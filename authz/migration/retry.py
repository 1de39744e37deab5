"""Running a migration job through store faults (issue 11, item 8).

A job must never stay RUNNING, holding its quota slots, while the server lives. A dropped
connection (a restarted or failed-over database, a killed backend) is transient: the
batch in flight rolled back with it, so the job is simply run again, with exponential
backoff, for as long as it takes. Any other error is retried a few times (it may be
transient too: SQLite's "database is locked"); if it persists the job is failed: its
pending users are rejected with `job_failed`, which ends the job and releases the slots
they reserved. The error's text goes to the log, never into the job.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from authz.migration.jobs import JOB_FAILED, Job
from authz.migration.runner import DEFAULT_BATCH, Progress, run_job
from authz.migration.service import MigrationStore
from authz.store.migration_schema import migration_job_items, migration_jobs

log = logging.getLogger("authz.migration")
ATTEMPTS = 6  # consecutive failures other than a dropped connection before the job fails


def is_disconnect(exc: BaseException) -> bool:
    """A lost database connection: SQLAlchemy invalidated it, the next one is fresh."""
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def backoff(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after `failures` consecutive failures: base, 2 base, ... cap."""
    return float(min(cap, base * 2 ** max(0, failures - 1)))


def run_job_retrying(ms: MigrationStore, org_id: str, job_id: str, *,
                     batch_size: int = DEFAULT_BATCH, pause: float = 0.0,
                     progress: Progress | None = None, stop: threading.Event | None = None,
                     base_delay: float = 0.1, max_delay: float = 30.0,
                     attempts: int = ATTEMPTS,
                     on_retry: Callable[[BaseException, int, float], None] | None = None
                     ) -> Job | None:
    """Run the job to completion through transient store errors; fail it (releasing its
    slots) on an error that persists. None when `stop` was set first."""
    stop = stop or threading.Event()
    failures = 0

    def moved(job: Job) -> None:
        nonlocal failures
        failures = 0  # a batch committed: the store works again
        if progress is not None:
            progress(job)

    while not stop.is_set():
        try:
            return run_job(ms, org_id, job_id, batch_size=batch_size, pause=pause,
                           progress=moved, stop=stop)
        except Exception as exc:
            failures += 1
            if not is_disconnect(exc) and failures >= attempts:
                log.error("migration job %s of %s failed after %d attempts: %s", job_id, org_id,
                          failures, exc, exc_info=True)
                return _fail_until_recorded(ms, org_id, job_id, stop, base_delay, max_delay)
            delay = backoff(failures, base_delay, max_delay)
            if on_retry is not None:
                on_retry(exc, failures, delay)
            stop.wait(delay)
    return None


def _fail_until_recorded(ms: MigrationStore, org_id: str, job_id: str, stop: threading.Event,
                         base_delay: float, max_delay: float) -> Job | None:
    failures = 0
    while not stop.is_set():
        try:
            fail_job(ms, job_id)
            return ms.job(org_id, job_id)
        except sa.exc.DBAPIError as exc:
            failures += 1
            log.warning("migration job %s: failure not recorded yet: %s", job_id, exc)
            stop.wait(backoff(failures, base_delay, max_delay))
    return None


def fail_job(ms: MigrationStore, job_id: str) -> None:
    """End the job: its pending users are rejected with `job_failed` (their quota slots are
    free again) and the job is finished."""
    i, j = migration_job_items, migration_jobs
    now = dt.datetime.now(dt.UTC)
    with ms.write() as conn, conn.begin():
        n = conn.execute(i.update().where(i.c.job_id == job_id, i.c.state == "pending")
                         .values(state="rejected", reason=JOB_FAILED, updated_at=now)).rowcount
        conn.execute(j.update().where(j.c.job_id == job_id, j.c.state != "done").values(
            state="done", updated_at=now, finished_at=now, rejected=j.c.rejected + n))
