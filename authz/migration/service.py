"""Migration jobs in the store: preview, apply (a durable job), status, quota raises.

An apply is accepted or refused as a whole, under the organization's row lock: unknown
users, duplicates and a selection over the quota are refused with nothing written. An
accepted apply writes a job and one item per user in the same transaction; eligible
users' slots are reserved by their pending items, so concurrent applies (threads or
replicas) can never together pass the quota. The job then runs in batches (see
authz.migration.runner), each batch one transaction that also bumps the directory revision and
writes the notices to the outbox: a crash loses at most an uncommitted batch, which the
resumed job redoes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from authz.directory import CrmUser, DirectorySnapshot, OrgMode
from authz.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from authz.migration import plan
from authz.migration.jobs import JOB_FAILED, Job, JobItem
from authz.migration.settings import OrgSettings, SettingsSource
from authz.store import orgmode, rows
from authz.store.connect import WRITE
from authz.store.migration_schema import (
    integration_quotas,
    migration_job_items,
    migration_jobs,
    quota_changes,
)
from authz.store.store import Store

UsageSource = Callable[[str], Mapping[str, int]]


USAGE_WINDOW = dt.timedelta(days=90)


def default_usage_source(store: Store) -> UsageSource:
    """Finance usage from the audit trail (authz.store.audit.usage_by_user: checks per user
    over the last 90 days) when that module is installed; otherwise nobody has usage, so
    automatic migration adds nobody rather than guessing."""
    try:
        from authz.store.audit import usage_by_user
    except ImportError:
        return lambda org_id: {}
    return lambda org_id: usage_by_user(store.engine, org_id, _now() - USAGE_WINDOW)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def read_snapshot(conn: Connection, org_id: str, revision: int) -> DirectorySnapshot:
    """The organization's directory as this transaction sees it (not the cache)."""
    return DirectorySnapshot.build(
        org_id, revision,
        (rows.CRM.from_row(k, v) for k, v in rows.CRM.read(conn, org_id).items()),
        (rows.FINANCE.from_row(k, v) for k, v in rows.FINANCE.read(conn, org_id).items()),
        (rows.INTEGRATION.from_row(k, v) for k, v in rows.INTEGRATION.read(conn, org_id).items()),
        orgmode.read_mode(conn, org_id))


def quota_in(conn: Connection, org_id: str, settings: OrgSettings) -> int:
    """An operator's raise overrides the policy's quota."""
    q = integration_quotas
    raised = conn.execute(sa.select(q.c.quota).where(q.c.org_id == org_id)).scalar()
    return int(raised) if raised is not None else settings.quota


def require_admin(snap: DirectorySnapshot, caller: str) -> CrmUser:
    """Only an active administrator of the organization may preview or apply."""
    user = snap.crm_user(caller) if caller else None
    if user is None or not user.is_admin or user.status != "active":
        raise PermissionDenied(f"'{caller or '(none)'}' is not an active administrator of "
                               f"organization '{snap.org_id}'")
    return user


class MigrationStore:
    """Migration state on the Store's database; safe to share across threads and replicas."""

    def __init__(self, store: Store, settings: SettingsSource,
                 usage: UsageSource | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.settings = settings
        self.usage = usage if usage is not None else default_usage_source(store)

    def write(self) -> Connection:
        """A connection whose next transaction writes (BEGIN IMMEDIATE on SQLite)."""
        conn = self.engine.connect()
        conn.execution_options(**{WRITE: True})
        return conn

    # -- the organization's mode -------------------------------------------------------

    def mode(self, org_id: str) -> OrgMode:
        """The organization's migration state as committed."""
        with self.engine.connect() as conn:
            return orgmode.read_mode(conn, org_id)

    def modes(self) -> dict[str, OrgMode]:
        """Every organization's recorded state (absent: nothing recorded yet)."""
        with self.engine.connect() as conn:
            return orgmode.all_modes(conn)

    def record_release(self, org_id: str, today: dt.date | None = None) -> OrgMode:
        """If the phased release has reached the organization (its compiled policy says so),
        record the day, once: that starts its three-month window (DOMAIN §6). The server
        calls this on a schedule and before every migration; returns the state."""
        seen = self.mode(org_id)
        if seen.window_start is not None or not self.settings(org_id).released:
            return seen  # recorded once: later sightings change nothing (read, no write)
        day = today or _now().date()
        with self.write() as conn, conn.begin():
            rev = Store.lock_revision(conn, org_id)
            if orgmode.record_release(conn, org_id, day):
                Store.bump_revision(conn, org_id, rev, _now(), "release")
            mode = orgmode.read_mode(conn, org_id)
        self.store.invalidate(org_id)
        return mode

    def end_window(self, org_id: str) -> bool:
        """The window ended with nobody to add: the organization becomes unified all the
        same (DOMAIN §6). True when it changed."""
        now = _now()
        with self.write() as conn, conn.begin():
            rev = Store.lock_revision(conn, org_id)
            changed = orgmode.mark_unified(conn, org_id, orgmode.WINDOW_ENDED, now)
            if changed:
                Store.bump_revision(conn, org_id, rev, now, "migration:window_ended")
        self.store.invalidate(org_id)
        return changed

    def require_released(self, org_id: str) -> OrgSettings:
        """The organization's settings; FailedPrecondition, saying why, when the release
        has not reached it: there is nothing to migrate to and nobody may be told they are
        live."""
        settings = self.settings(org_id)
        if not settings.released:
            raise FailedPrecondition(
                f"organization '{org_id}' cannot migrate yet: "
                f"{settings.mode_reason or 'the unified mode has not reached it'}; its "
                "three-month window starts when the phased release reaches it")
        return settings

    # -- preview -----------------------------------------------------------------------

    def preview(self, org_id: str, caller: str) -> plan.Preview:
        """What the "Migrate users" screen shows, from committed state."""
        settings = self.settings(org_id)  # unknown organizations fail here
        mode = self.record_release(org_id) if settings.released else OrgMode()
        usage = self.usage(org_id)
        with self.engine.connect() as conn, conn.begin():
            rev = self.store._read_revision(conn, org_id)
            snap = read_snapshot(conn, org_id, rev)
            require_admin(snap, caller)
            quota = quota_in(conn, org_id, settings)
        return plan.preview(snap, quota, usage, mode=mode, released=settings.released,
                            mode_reason=settings.mode_reason)

    # -- apply -------------------------------------------------------------------------

    def apply(self, org_id: str, caller: str, crm_user_ids: Sequence[str], request_key: str,
              *, kind: str = "manual") -> Job:
        """Accept a migration as a whole (or refuse it with nothing written); returns the job,
        which is still pending: run it with authz.migration.runner.run_job."""
        settings = self.require_released(org_id)
        ids = list(crm_user_ids)
        if not request_key or len(request_key) > 128:
            raise InvalidArgument("request_key", "required, 1 to 128 characters")
        if not ids:
            raise InvalidArgument("crm_user_ids", "select at least one user")
        dups = plan.check_selection(ids)
        if dups:
            raise InvalidArgument("crm_user_ids", f"listed more than once: {', '.join(dups)}")
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        with self.write() as conn, conn.begin():
            rev = Store.lock_revision(conn, org_id)
            existing = self._job_by_key(conn, org_id, request_key)
            if existing is not None:
                if existing[1] != digest:
                    raise InvalidArgument("request_key", f"'{request_key}' was used for another "
                                          "selection; use a new key")
                job_id = existing[0]
            else:
                snap = read_snapshot(conn, org_id, rev)
                if kind == "manual":
                    require_admin(snap, caller)
                job_id = self._create(conn, snap, settings, caller, ids, request_key, digest, kind)
                # Saving the migration makes the organization unified (§6); an automatic
                # run does the same when the window has ended.
                now = _now()
                orgmode.record_release(conn, org_id, now.date())
                how = orgmode.SAVED if kind == "manual" else orgmode.WINDOW_ENDED
                if orgmode.mark_unified(conn, org_id, how, now):
                    rev = Store.bump_revision(conn, org_id, rev, now, f"migration:{how}")
                    conn.execute(migration_jobs.update().where(migration_jobs.c.job_id == job_id)
                                 .values(revision=rev))
        self.store.invalidate(org_id)
        return self.job(org_id, job_id)

    @staticmethod
    def _job_by_key(conn: Connection, org_id: str, key: str) -> tuple[str, str] | None:
        j = migration_jobs
        row = conn.execute(sa.select(j.c.job_id, j.c.request_digest)
                           .where(j.c.org_id == org_id, j.c.request_key == key)).first()
        return (row[0], row[1]) if row else None

    def _create(self, conn: Connection, snap: DirectorySnapshot, settings: OrgSettings, caller: str,
                ids: list[str], request_key: str, digest: str, kind: str) -> str:
        unknown = [u for u in ids if u not in snap.crm_users]
        if unknown:
            raise InvalidArgument("crm_user_ids", f"no such CRM user in organization "
                                  f"'{snap.org_id}': {', '.join(unknown[:10])}"
                                  + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
        reasons = {u: plan.eligibility(snap, snap.crm_users[u]) for u in ids}
        reserved = self._reserved(conn, snap.org_id)
        eligible = [u for u in ids if reasons[u] is None and u not in reserved]
        quota = quota_in(conn, snap.org_id, settings)
        slots = max(0, quota - len(snap.integration_users) - len(reserved))
        if len(eligible) > slots:
            raise InvalidArgument("crm_user_ids", f"{len(eligible)} users selected but only "
                                  f"{slots} of {quota} integration-user slots remain")
        now = _now()
        job_id = uuid.uuid4().hex
        pending = set(eligible)
        done_already = [u for u in ids if reasons[u] is None and u in reserved]
        conn.execute(migration_jobs.insert().values(
            job_id=job_id, org_id=snap.org_id, request_key=request_key, request_digest=digest,
            kind=kind, requested_by=caller[:128], state="pending", total=len(ids), done=0,
            rejected=len(ids) - len(pending) - len(done_already), revision=snap.revision,
            created_at=now, updated_at=now))
        conn.execute(migration_job_items.insert(), [{
            "job_id": job_id, "crm_user_id": u, "position": i,
            # A user another unfinished job will migrate stays pending here too (taking no
            # second slot); whichever job runs second finds them already an integration
            # user and rejects them with that reason: never migrated twice.
            "state": "pending" if u in pending or u in done_already else "rejected",
            "reason": None if reasons[u] is None else str(reasons[u]),
            "updated_at": now,
        } for i, u in enumerate(ids)])
        return job_id

    @staticmethod
    def _reserved(conn: Connection, org_id: str) -> set[str]:
        """Users pending in unfinished jobs: their slots are taken."""
        return rows.pending_integration_users(conn, org_id)

    # -- status ------------------------------------------------------------------------

    def job(self, org_id: str, job_id: str, *, items: bool = True) -> Job:
        """A job of this organization (NotFound for another organization's job)."""
        j, i = migration_jobs, migration_job_items
        with self.engine.connect() as conn, conn.begin():
            row = conn.execute(sa.select(j).where(j.c.job_id == job_id, j.c.org_id == org_id)).first()
            if row is None:
                raise NotFound(f"no migration job '{job_id}' in organization '{org_id}'")
            failed = conn.execute(sa.select(i.c.crm_user_id).where(
                i.c.job_id == job_id, i.c.reason == JOB_FAILED).limit(1)).first() is not None
            found: tuple[JobItem, ...] = ()
            if items:
                found = tuple(JobItem(r.crm_user_id, r.state, r.reason or "", r.integration_user_id or "")
                              for r in conn.execute(sa.select(i).where(i.c.job_id == job_id)
                                                    .order_by(i.c.position)))
        m = row._mapping
        return Job(m["job_id"], m["org_id"], m["kind"], m["request_key"], m["requested_by"], m["state"],
                   m["total"], m["done"], m["rejected"], int(m["revision"] or 0),
                   _aware(m["created_at"]) or _now(), _aware(m["finished_at"]), found, failed)

    def unfinished(self) -> list[tuple[str, str]]:
        """(org_id, job_id) of every job not done: what a starting server resumes."""
        j = migration_jobs
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                sa.select(j.c.org_id, j.c.job_id).where(j.c.state != "done").order_by(j.c.created_at))]

    # -- quota -------------------------------------------------------------------------

    def quota(self, org_id: str) -> int:
        settings = self.settings(org_id)
        with self.engine.connect() as conn:
            return quota_in(conn, org_id, settings)

    def set_quota(self, org_id: str, new_quota: int, operator: str, reason: str) -> int:
        """An operator's quota change, recorded with who, when and why (audited); returns the
        previous quota. Refused below the integration users the organization already has."""
        if not operator.strip():
            raise InvalidArgument("operator", "required: who is changing the quota")
        if not reason.strip():
            raise InvalidArgument("reason", "required: why the quota changes (e.g. a ticket)")
        if new_quota < 0:
            raise InvalidArgument("quota", "must not be negative")
        settings = self.settings(org_id)
        now = _now()
        with self.write() as conn, conn.begin():
            rev = Store.lock_revision(conn, org_id)
            old = quota_in(conn, org_id, settings)
            used = len(rows.INTEGRATION.read(conn, org_id)) + len(self._reserved(conn, org_id))
            if new_quota < used:
                raise InvalidArgument("quota", f"{used} integration users exist or are being "
                                      f"added; the quota cannot go below that (revision {rev})")
            q = integration_quotas
            if conn.execute(sa.select(q.c.org_id).where(q.c.org_id == org_id)).first():
                conn.execute(q.update().where(q.c.org_id == org_id).values(quota=new_quota, updated_at=now))
            else:
                conn.execute(q.insert().values(org_id=org_id, quota=new_quota, updated_at=now))
            conn.execute(quota_changes.insert().values(
                org_id=org_id, old_quota=old, new_quota=new_quota, operator=operator[:128],
                reason=reason, created_at=now))
        return old

    def quota_history(self, org_id: str) -> list[dict[str, object]]:
        q = quota_changes
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(q).where(q.c.org_id == org_id).order_by(q.c.id))]
