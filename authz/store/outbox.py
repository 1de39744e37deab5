"""The notification outbox: notices written in the transaction of the change they announce.

A notice is unique per (organization, user, kind, version), so enqueueing it twice (a
retried job, two replicas) stores it once. Senders lease due rows before delivering
(FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's write lock serializes), so two replicas
never send the same row, and a row is marked sent only after the SMTP server accepted it.
Failed deliveries back off exponentially.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from authz.store import schema
from authz.store.connect import WRITE
from authz.store.migration_schema import outbox

MIGRATED = "migrated"
PERMISSION_SET = "permission_set"
LEASE = dt.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Notice:
    """One e-mail to deliver."""

    id: int
    org_id: str
    crm_user_id: str
    kind: str
    version: int
    recipient: str
    subject: str
    body: str
    attempts: int

    @property
    def message_id(self) -> str:
        """Stable per notice: a receiver can drop a duplicate if a crash makes us resend."""
        return f"<{self.kind}.{self.version}.{self.crm_user_id}.{self.org_id}@authz.invalid>"


def compose(kind: str, version: int, name: str) -> tuple[str, str]:
    """Subject and body of a notice."""
    if kind == MIGRATED:
        return ("You now act in your own finance scope",
                f"Hello {name},\n\nyour organization migrated you to an integration user: finance "
                "operations you take in the CRM now run under your own identity, with the "
                f"integration-user permission set (version {version}).\n")
    return ("The integration-user permission set changed",
            f"Hello {name},\n\nthe integration-user permission set is now at version {version}; "
            "what you may do in the finance modules from the CRM has changed.\n")


def enqueue(conn: Connection, org_id: str, notices: Iterable[tuple[str, str, str, str, int]]) -> None:
    """Add (crm_user_id, email, name, kind, version) notices inside the caller's transaction;
    one already there is left alone."""
    now = dt.datetime.now(dt.UTC)
    values = []
    for crm_user_id, email, name, kind, version in notices:
        subject, body = compose(kind, version, name)
        values.append({"org_id": org_id, "crm_user_id": crm_user_id, "kind": kind, "version": version,
                       "recipient": email, "subject": subject, "body": body, "created_at": now,
                       "attempts": 0, "next_attempt_at": now})
    if not values:
        return
    ins = postgresql.insert(outbox) if conn.dialect.name == "postgresql" else sqlite.insert(outbox)
    conn.execute(ins.on_conflict_do_nothing(), values)


def notify_permission_set(engine: Engine, org_id: str, version: int) -> int:
    """Tell every integration user not yet told about `version`, once; returns how many
    notices were enqueued. Safe to call repeatedly and from every replica."""
    iu, crm = schema.integration_users, schema.crm_users
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            stale = conn.execute(  # FOR UPDATE: two replicas do not both tell the same users
                sa.select(iu.c.crm_user_id, crm.c.email, crm.c.name)
                .join(crm, sa.and_(crm.c.org_id == iu.c.org_id, crm.c.id == iu.c.crm_user_id))
                .where(iu.c.org_id == org_id,
                       sa.or_(iu.c.permission_set_version.is_(None), iu.c.permission_set_version < version))
                .with_for_update(of=iu)).all()
            if not stale:
                return 0
            enqueue(conn, org_id, ((r[0], r[1], r[2], PERMISSION_SET, version) for r in stale if r[1]))
            conn.execute(iu.update().where(iu.c.org_id == org_id,
                                           iu.c.crm_user_id.in_([r[0] for r in stale]))
                         .values(permission_set_version=version))
    return sum(1 for r in stale if r[1])


def backoff(attempts: int, base: float = 2.0, cap: float = 900.0) -> dt.timedelta:
    """Delay before the next attempt after `attempts` failures: 2 s, 4 s, 8 s, ... 15 min."""
    return dt.timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


class Outbox:
    """Leasing and marking notices for a sender."""

    def __init__(self, engine: Engine, *, base_delay: float = 2.0, max_delay: float = 900.0) -> None:
        self.engine = engine
        self.base_delay = base_delay
        self.max_delay = max_delay

    def claim(self, limit: int = 50) -> list[Notice]:
        """Lease up to `limit` due notices (unsent, due, not leased by a live sender)."""
        now = dt.datetime.now(dt.UTC)
        o = outbox
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                q = (sa.select(o).where(o.c.sent_at.is_(None), o.c.next_attempt_at <= now,
                                        sa.or_(o.c.claimed_until.is_(None), o.c.claimed_until < now))
                     .order_by(o.c.id).limit(limit))
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update(skip_locked=True)
                found = conn.execute(q).all()
                if found:
                    conn.execute(o.update().where(o.c.id.in_([r.id for r in found]))
                                 .values(claimed_until=now + LEASE))
        return [Notice(r.id, r.org_id, r.crm_user_id, r.kind, r.version, r.recipient, r.subject,
                       r.body, r.attempts) for r in found]

    def sent(self, notice_id: int) -> None:
        o = outbox
        with self.engine.begin() as conn:
            conn.execute(o.update().where(o.c.id == notice_id).values(
                sent_at=dt.datetime.now(dt.UTC), claimed_until=None, attempts=o.c.attempts + 1))

    def failed(self, notice: Notice, error: str) -> None:
        """Release the lease and schedule the next attempt with exponential backoff."""
        o = outbox
        attempts = notice.attempts + 1
        when = dt.datetime.now(dt.UTC) + backoff(attempts, self.base_delay, self.max_delay)
        with self.engine.begin() as conn:
            conn.execute(o.update().where(o.c.id == notice.id).values(
                attempts=attempts, next_attempt_at=when, claimed_until=None, last_error=error[:2000]))

    def pending(self) -> int:
        """Notices not sent yet."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                    .where(outbox.c.sent_at.is_(None))).scalar_one())
