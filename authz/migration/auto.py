"""After the window: automatic migration by finance usage, and sign-ups in unified mode.

Existing organizations have three months from the day the phased release reached them
(which the server records in the store, authz.store.orgmode) to migrate (DOMAIN §6).
Until then they stay legacy. After the deadline, candidates are added by how much they used
the finance modules, most active first, within the slots left, and the organization
becomes unified. Each run is an ordinary job with the request key `auto:<date>`, so
running it twice a day (scheduler, CLI, several replicas) starts it once. Organizations
that saved their migration, or signed up in unified mode, have no window left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from authz.directory import CrmUser, FinanceUser
from authz.migration import plan
from authz.migration.jobs import Job
from authz.migration.service import MigrationStore, quota_in, read_snapshot
from authz.store import orgmode
from authz.store.migration_schema import org_signups
from authz.store.store import Store

AUTO = "system:auto-migration"


@dataclass(frozen=True, slots=True)
class AutoResult:
    """What an automatic run did (or, dry, would do) for one organization."""

    org_id: str
    deadline: dt.date | None
    selected: tuple[str, ...] = ()
    job: Job | None = None
    skipped: str = ""  # why nothing was selected


def signed_up(ms: MigrationStore) -> set[str]:
    with ms.engine.connect() as conn:
        return set(conn.execute(sa.select(org_signups.c.org_id)).scalars())


def auto_migrate(ms: MigrationStore, org_ids: Iterable[str], today: dt.date | None = None,
                 dry_run: bool = False) -> list[AutoResult]:
    """Start (or, dry, list) the automatic migration of every organization past its deadline."""
    today = today or dt.datetime.now(dt.UTC).date()
    new = signed_up(ms)
    out: list[AutoResult] = []
    for org_id in org_ids:
        s = ms.settings(org_id)
        if org_id in new:
            out.append(AutoResult(org_id, None, skipped="signed up in unified mode: no window"))
            continue
        if not s.released:
            out.append(AutoResult(org_id, None, skipped="unified mode not available yet"))
            continue
        mode = ms.mode(org_id) if dry_run else ms.record_release(org_id, today)
        if mode.unified:
            out.append(AutoResult(org_id, mode.deadline,
                                  skipped=f"already unified ({mode.unified_by})"))
            continue
        deadline = mode.deadline
        if deadline is None or today < deadline:
            out.append(AutoResult(org_id, deadline, skipped=f"window open until {deadline or '-'}"))
            continue
        usage = ms.usage(org_id)
        with ms.engine.connect() as conn, conn.begin():
            snap = read_snapshot(conn, org_id, ms.store._read_revision(conn, org_id))
            quota = quota_in(conn, org_id, s)
        chosen = plan.automatic_selection(snap, quota, usage)
        if dry_run:
            out.append(AutoResult(org_id, deadline, tuple(chosen)))
            continue
        if not chosen:  # nobody to add, but the window has ended: unified all the same
            ms.end_window(org_id)
            out.append(AutoResult(org_id, deadline, skipped="window ended: no candidate with "
                                  "finance usage, or no slot left; the organization is unified"))
            continue
        job = ms.apply(org_id, AUTO, chosen, f"auto:{today.isoformat()}", kind="auto")
        out.append(AutoResult(org_id, deadline, tuple(chosen), job))
    return out


def sign_up(ms: MigrationStore, org_id: str, admin: CrmUser, users: Sequence[CrmUser] = (),
            integration_user_ids: Sequence[str] = (),
            finance_users: Sequence[FinanceUser] = ()) -> Job | None:
    """Set up a new organization in unified mode: its directory, no migration window, and
    integration users available at once (those named become integration users now).
    Refused (FailedPrecondition) where the phased release has not arrived: nobody may be
    told they are live before they are."""
    ms.require_released(org_id)
    if not admin.is_admin:
        admin = CrmUser(admin.id, admin.email, admin.name, admin.status, True)
    ms.store.import_directory(org_id, [admin, *users], finance_users, source="signup")
    now = dt.datetime.now(dt.UTC)
    with ms.write() as conn, conn.begin():
        rev = Store.lock_revision(conn, org_id)
        s = org_signups
        if conn.execute(sa.select(s.c.org_id).where(s.c.org_id == org_id)).first() is None:
            conn.execute(s.insert().values(org_id=org_id, signed_up_at=now,
                                           admin_crm_user_id=admin.id))
        if orgmode.mark_unified(conn, org_id, orgmode.SIGNUP, now):
            Store.bump_revision(conn, org_id, rev, now, "signup")
    ms.store.invalidate(org_id)
    if not integration_user_ids:
        return None
    from authz.migration.runner import run_job

    job = ms.apply(org_id, admin.id, list(integration_user_ids), "signup")
    return run_job(ms, org_id, job.job_id)
