"""Running a migration job: pending items in batches, one transaction per batch.

Each batch locks the organization's row, re-checks every user against the committed
directory and the quota (a rejection does not fail the others), adds the integration
users, marks the items, bumps the directory revision and writes the notices to the
outbox, all in that one transaction. So a crash loses at most the batch in flight (its
items are still pending and the resumed job redoes them), and two runners of the same
job (a resumed server and a CLI, two replicas) only ever take turns: an item is done
exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from authz.directory import DirectorySnapshot
from authz.migration import plan
from authz.migration.jobs import OVER_QUOTA, Job
from authz.migration.service import MigrationStore, quota_in, read_snapshot
from authz.store import outbox, schema
from authz.store.migration_schema import migration_job_items, migration_jobs
from authz.store.store import Store

Progress = Callable[[Job], None]
DEFAULT_BATCH = 200


def integration_user_id(crm_user_id: str, taken: set[str]) -> str:
    """A stable, readable id (iu-<crm id>), hashed when too long or already taken."""
    iu_id = f"iu-{crm_user_id}"
    if len(iu_id) <= 128 and iu_id not in taken:
        return iu_id
    return "iu-" + hashlib.sha256(crm_user_id.encode()).hexdigest()[:32]


def run_job(ms: MigrationStore, org_id: str, job_id: str, *, batch_size: int = DEFAULT_BATCH,
            pause: float = 0.0, progress: Progress | None = None,
            stop: threading.Event | None = None) -> Job:
    """Run a job to completion (or until `stop` is set); returns its final status."""
    while stop is None or not stop.is_set():
        more = run_batch(ms, org_id, job_id, batch_size)
        if progress is not None:
            progress(ms.job(org_id, job_id, items=False))
        if not more:
            break
        if pause:
            time.sleep(pause)
    return ms.job(org_id, job_id)


def run_batch(ms: MigrationStore, org_id: str, job_id: str, batch_size: int = DEFAULT_BATCH) -> bool:
    """Process up to `batch_size` pending items in one transaction; False when the job is done."""
    settings = ms.settings(org_id)
    with ms.write() as conn, conn.begin():
        rev = Store.lock_revision(conn, org_id)
        j, i = migration_jobs, migration_job_items
        state = conn.execute(sa.select(j.c.state).where(j.c.job_id == job_id)).scalar()
        if state is None or state == "done":
            return False
        pending = list(conn.execute(
            sa.select(i.c.crm_user_id).where(i.c.job_id == job_id, i.c.state == "pending")
            .order_by(i.c.position).limit(batch_size)).scalars())
        now = dt.datetime.now(dt.UTC)
        if not pending:
            conn.execute(j.update().where(j.c.job_id == job_id)
                         .values(state="done", updated_at=now, finished_at=now))
            return False
        snap = read_snapshot(conn, org_id, rev)
        quota = quota_in(conn, org_id, settings)
        count = len(snap.integration_users)
        taken = {u.integration_user_id for u in snap.integration_users.values()}
        done: dict[str, str] = {}
        rejected: dict[str, str] = {}
        for uid in pending:
            reason = plan.eligibility(snap, snap.crm_users.get(uid))
            if reason is not None:
                rejected[uid] = str(reason)
            elif count >= quota:
                rejected[uid] = OVER_QUOTA
            else:
                done[uid] = integration_user_id(uid, taken)
                taken.add(done[uid])
                count += 1
        if done:
            _add_users(conn, org_id, snap, done, settings.permission_set_version, now)
            rev = Store.bump_revision(conn, org_id, rev, now, f"migration:{job_id}"[:64],
                                      inserted=len(done))
        _mark(conn, job_id, done, rejected, rev, now)
        conn.execute(j.update().where(j.c.job_id == job_id).values(
            state="running", updated_at=now, revision=rev,
            done=j.c.done + len(done), rejected=j.c.rejected + len(rejected)))
    if done:
        ms.store.invalidate(org_id)  # this replica reads its own write at once
    return True


def _add_users(conn: Connection, org_id: str, snap: DirectorySnapshot, done: dict[str, str],
               version: int, now: dt.datetime) -> None:
    """Integration users, and their notice, in the batch's transaction."""
    conn.execute(schema.integration_users.insert(), [
        {"org_id": org_id, "crm_user_id": uid, "integration_user_id": iu_id, "created_at": now,
         "permission_set_version": version} for uid, iu_id in done.items()])
    outbox.enqueue(conn, org_id, (
        (uid, snap.crm_users[uid].email, snap.crm_users[uid].name, outbox.MIGRATED, version)
        for uid in done))


def _mark(conn: Connection, job_id: str, done: dict[str, str], rejected: dict[str, str], rev: int,
          now: dt.datetime) -> None:
    i = migration_job_items
    stmt = i.update().where(i.c.job_id == job_id, i.c.crm_user_id == sa.bindparam("k_uid"))
    if done:
        conn.execute(stmt.values(state="done", integration_user_id=sa.bindparam("iu"), revision=rev,
                                 updated_at=now),
                     [{"k_uid": u, "iu": iu} for u, iu in done.items()])
    if rejected:
        conn.execute(stmt.values(state="rejected", reason=sa.bindparam("why"), updated_at=now),
                     [{"k_uid": u, "why": why} for u, why in rejected.items()])
