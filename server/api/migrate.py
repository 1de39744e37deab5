"""Migrate, GetMigrationJob, WatchMigrationJob, and the server's migration background work.

The runtime owns what runs beside the RPCs: jobs (a small thread pool of their own, so a
1,000-user job never takes a decision thread), unfinished jobs resumed at start, the
recording the day the phased release reaches each organization (its window starts), the
automatic migration on schedule, permission-set notices and outbox delivery. Settings
come from the environment: AUTHZ_MIGRATION_BATCH (users per transaction, default 200),
AUTHZ_MIGRATION_PAUSE (seconds between batches, default 0), AUTHZ_RELEASE_INTERVAL
(seconds between looks for organizations the release reached, default 60),
AUTHZ_MIGRATION_AUTO_INTERVAL (seconds between automatic migrations, default 3600; 0
disables them), AUTHZ_NOTICE_INTERVAL (seconds between looks for integration users to
tell about a new permission set, default 3600; 0 disables: a setting of its own, not tied
to the automatic migration), AUTHZ_OUTBOX_INTERVAL (default 2), AUTHZ_SMTP_HOST/PORT/FROM
(no host: notices wait in the outbox).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from authz.engine.engine import PolicySet
from authz.errors import FailedPrecondition, InvalidArgument
from authz.mail import SmtpConfig, SmtpSender, deliver_due
from authz.migration import plan
from authz.migration.auto import auto_migrate
from authz.migration.jobs import Job
from authz.migration.retry import run_job_retrying
from authz.migration.service import MigrationStore
from authz.migration.settings import settings_from_manifest
from authz.store import Store
from authz.store.outbox import Outbox, notify_permission_set
from authz.v1 import authz_pb2 as pb

from ..process.logs import event
from .jobwatch import JobWatch

log = logging.getLogger("authz.server.migrate")
_STATES = {"pending": pb.MIGRATION_STATE_QUEUED, "running": pb.MIGRATION_STATE_RUNNING,
           "done": pb.MIGRATION_STATE_DONE}
_RUNTIMES: weakref.WeakKeyDictionary[object, MigrationRuntime] = weakref.WeakKeyDictionary()


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class MigrationRuntime:
    """Jobs, schedule and outbox of one server process."""

    def __init__(self, store: Store, policies: PolicySet) -> None:
        self.policies = policies
        self.ms = MigrationStore(store, lambda org: settings_from_manifest(policies.get(org).manifest))
        self.batch = int(_env("AUTHZ_MIGRATION_BATCH", 200))
        self.pause = _env("AUTHZ_MIGRATION_PAUSE", 0)
        self.auto_interval = _env("AUTHZ_MIGRATION_AUTO_INTERVAL", 3600)
        self.notice_interval = _env("AUTHZ_NOTICE_INTERVAL", 3600)
        self.release_interval = max(_env("AUTHZ_RELEASE_INTERVAL", 60), 0.1)
        self.outbox_interval = _env("AUTHZ_OUTBOX_INTERVAL", 2)
        smtp = SmtpConfig.from_env()
        self.sender = SmtpSender(smtp) if smtp else None
        self.outbox = Outbox(store.engine)
        self._jobs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="authz-migration")
        self._stop = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.watch: JobWatch | None = None  # WatchMigrationJob's shared poller, on first use

    def start(self) -> None:
        """Resume unfinished jobs, then run the schedule (from the event loop)."""
        for org_id, job_id in self.ms.unfinished():
            event(log, logging.INFO, "migration_resumed", org_id=org_id, job_id=job_id)
            self.submit(org_id, job_id)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._every(self.release_interval, self.releases)))
        if self.auto_interval > 0:
            self._tasks.append(loop.create_task(self._every(self.auto_interval, self.scheduled)))
        if self.notice_interval > 0:
            self._tasks.append(loop.create_task(self._every(self.notice_interval, self.notices)))
        if self.sender is not None:
            self._tasks.append(loop.create_task(self._every(self.outbox_interval, self.deliver)))

    def submit(self, org_id: str, job_id: str) -> None:
        self._jobs.submit(self._run, org_id, job_id)

    def _run(self, org_id: str, job_id: str) -> None:
        """Run a job through transient store errors (retried with backoff); a persistent
        error fails it, releasing its slots. Only a stopping server leaves it unfinished
        (the next start resumes it)."""
        def retry(exc: BaseException, failures: int, delay: float) -> None:
            event(log, logging.WARNING, "migration_job_retry", org_id=org_id, job_id=job_id,
                  failures=failures, delay=delay, error=f"{type(exc).__name__}: {exc}")
        try:
            job = run_job_retrying(self.ms, org_id, job_id, batch_size=self.batch, pause=self.pause,
                                   stop=self._stop, on_retry=retry)
        except Exception as exc:  # not a store error: a bug; logged, resumed at the next start
            event(log, logging.ERROR, "migration_job_failed", org_id=org_id, job_id=job_id,
                  error=str(exc), exc_info=True)
            return
        if job is not None:
            event(log, logging.INFO, "migration_job", org_id=org_id, job_id=job_id,
                  state="failed" if job.failed else job.state, done=job.done,
                  rejected=job.rejected, revision=job.revision)

    async def _every(self, seconds: float, fn: Any) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await loop.run_in_executor(self._jobs, fn)
            except Exception as exc:
                event(log, logging.ERROR, "migration_schedule_failed", error=str(exc), exc_info=True)
            await asyncio.sleep(seconds)

    def releases(self) -> None:
        """Record the day the phased release reached each organization (once): its
        three-month window starts then, not on a date typed into a file (DOMAIN §6)."""
        known = self.ms.modes()
        for org_id in self.policies.org_ids():
            seen = known.get(org_id)
            if (seen is None or seen.window_start is None) and self.ms.settings(org_id).released:
                mode = self.ms.record_release(org_id)
                event(log, logging.INFO, "release_reached", org_id=org_id,
                      window_start=str(mode.window_start), window_ends=str(mode.deadline))

    def notices(self) -> None:
        """Tell integration users about a new permission set, once, where it is live."""
        known = self.ms.modes()
        for org_id in self.policies.org_ids():
            settings = self.ms.settings(org_id)
            mode = known.get(org_id)
            if not settings.released or mode is None or not mode.unified:
                continue  # nobody is told before the change is live for them
            version = settings.permission_set_version
            told = notify_permission_set(self.ms.engine, org_id, version)
            if told:
                event(log, logging.INFO, "permission_set_notices", org_id=org_id, version=version,
                      users=told)

    def scheduled(self) -> None:
        """Migrate organizations past the end of their window."""
        for r in auto_migrate(self.ms, self.policies.org_ids()):
            if r.job is not None and r.job.state != "done":
                self.submit(r.org_id, r.job.job_id)

    def deliver(self) -> None:
        if self.sender is not None:
            while sum(deliver_due(self.outbox, self.sender)) > 0 and not self._stop.is_set():
                pass

    def stop(self) -> None:
        """Stop between batches: an unfinished job resumes at the next start."""
        self._stop.set()
        for t in self._tasks:  # thread-safe: the server's shutdown calls this off the loop
            t.get_loop().call_soon_threadsafe(t.cancel)
        if self.watch is not None:
            self.watch.stop()
        self._jobs.shutdown(wait=True, cancel_futures=True)


def start_migrations(service: object, store: object, policies: PolicySet) -> MigrationRuntime | None:
    """Attach the runtime to the servicer (None for a store that is not authz.store's)."""
    if not isinstance(store, Store):
        return None
    runtime = MigrationRuntime(store, policies)
    _RUNTIMES[service] = runtime
    runtime.start()
    return runtime


def _runtime(service: object) -> MigrationRuntime:
    rt = _RUNTIMES.get(service)
    if rt is None:
        raise FailedPrecondition("migrations are not available on this server")
    return rt


def _ts(value: Any) -> Timestamp | None:
    if value is None:
        return None
    t = Timestamp()
    t.FromDatetime(value)
    return t


def job_message(job: Job, summary_only: bool = False) -> pb.MigrationJob:
    state = pb.MIGRATION_STATE_FAILED if job.failed else _STATES[job.state]
    msg = pb.MigrationJob(job_id=job.job_id, org_id=job.org_id, state=state, total=job.total,
                          done=job.done, rejected=job.rejected, directory_revision=job.revision,
                          kind=job.kind, request_key=job.request_key, created_at=_ts(job.created_at),
                          finished_at=_ts(job.finished_at))
    if not summary_only:
        for i in job.items:
            msg.results.add(crm_user_id=i.crm_user_id, state=i.state, reason=i.reason,
                            message=i.message if i.reason else "",
                            integration_user_id=i.integration_user_id)
    return msg


def preview_message(p: plan.Preview) -> pb.MigrateResponse:
    deadline = p.mode.deadline if p.released and not p.mode.unified else None
    out = pb.MigrateResponse(slots_left=p.slots_left, quota=p.quota, directory_revision=p.directory_revision,
                             message=f"{p.status_line()}: {len(p.common)} common users, "
                                     f"{len(p.candidates)} candidates, "
                                     f"{p.slots_left} of {p.quota} slots left",
                             mode=pb.MODE_UNIFIED if p.released and p.mode.unified else pb.MODE_LEGACY,
                             window_ends=deadline.isoformat() if deadline else "")
    for c in p.common:
        out.common_users.add(crm_user_id=c.crm_user_id, email=c.email, roles=list(c.roles),
                             name=c.name, books_user_id=c.books_user_id, books_status=c.books_status)
    for d in p.candidates:
        out.integration_candidates.add(crm_user_id=d.crm_user_id, email=d.email, name=d.name, usage=d.usage)
    for e in p.excluded:
        out.excluded.add(crm_user_id=e.crm_user_id, reason=str(e.reason), message=e.message)
    return out


def _org(value: str) -> str:
    if not value:
        raise InvalidArgument("org_id", "required")
    return value


async def _call(service: Any, fn: Any, *args: Any) -> Any:
    from .threads import in_thread

    return await in_thread(service.executor, fn, *args)


async def migrate(service: Any, request: pb.MigrateRequest) -> pb.MigrateResponse:
    """Preview (the default) or apply; raises AuthzError for the servicer to map."""
    rt = _runtime(service)
    org_id = _org(request.org_id)
    if request.mode in (pb.MIGRATE_MODE_UNSPECIFIED, pb.MIGRATE_MODE_PREVIEW):
        return preview_message(await _call(service, rt.ms.preview, org_id, request.caller))
    if request.mode != pb.MIGRATE_MODE_APPLY:
        raise InvalidArgument("mode", f"unknown mode {request.mode}")
    job: Job = await _call(service, rt.ms.apply, org_id, request.caller, list(request.crm_user_ids),
                           request.request_key)
    if job.state != "done":
        rt.submit(org_id, job.job_id)
    event(log, logging.INFO, "migration_accepted", org_id=org_id, job_id=job.job_id, caller=request.caller,
          users=job.total)
    return pb.MigrateResponse(job_id=job.job_id, state=_STATES[job.state], job=job_message(job),
                              directory_revision=job.revision,
                              message=f"job {job.job_id}: {job.total} users, {job.rejected} rejected "
                                      "up front; follow it with WatchMigrationJob")


async def get_job(service: Any, request: pb.GetMigrationJobRequest) -> pb.MigrationJob:
    rt = _runtime(service)
    job = await _call(service, lambda: rt.ms.job(_org(request.org_id), request.job_id,
                                                 items=not request.summary_only))
    return job_message(job, request.summary_only)


async def watch_job(service: Any, request: pb.GetMigrationJobRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[pb.MigrationJob]:
    """A message whenever the job's progress moves, the last one when it is done. Every
    stream is fed by the runtime's one poller (server/api/jobwatch.py), not a loop of its own."""
    rt = _runtime(service)
    org_id = _org(request.org_id)
    if rt.watch is None:
        rt.watch = JobWatch(lambda org, job_id: _call(
            service, lambda: rt.ms.job(org, job_id, items=False)))
    async for job in rt.watch.follow(org_id, request.job_id):
        if job.state == "done" and not request.summary_only:
            job = await _call(service, rt.ms.job, org_id, request.job_id)
        yield job_message(job, request.summary_only)
