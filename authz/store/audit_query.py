"""Reading the audit trail: a query (organization, user, record, decision, time), one
page of entries in sequence order."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from authz.audit.chain import AuditEntry
from authz.store.audit_schema import audit_entries as E

MAX_PAGE = 1000
_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEntry))


def stamp(at: dt.datetime) -> str:
    """The fixed-width UTC text an entry's `at` holds (and the hash covers)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entry(row: Any) -> AuditEntry:
    m = row._mapping
    return AuditEntry(**{k: m[k] for k in _FIELDS} | {"allowed": bool(m["allowed"]),
                                                        "seq": int(m["seq"]),
                                                        "directory_revision": int(m["directory_revision"])})


@dataclass(frozen=True, slots=True)
class Query:
    """Which entries to list: one organization, optionally narrowed; pages by sequence."""

    org_id: str
    crm_user: str = ""
    record_id: str = ""
    decision_id: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # exclusive
    after_seq: int = 0  # the page token: the last seq of the previous page
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[AuditEntry]
    next_after: int  # 0: no more pages


def _query(conn: Connection, q: Query, through: int | None = None) -> Page:
    """`AuditStore.query` on `conn`; `through` bounds the page to entries up to that seq."""
    limit = max(1, min(q.limit, MAX_PAGE))
    stmt = sa.select(E).where(E.c.org_id == q.org_id, E.c.seq > q.after_seq)
    if through is not None:
        stmt = stmt.where(E.c.seq <= through)
    if q.crm_user:
        stmt = stmt.where(E.c.crm_user == q.crm_user)
    if q.record_id:
        stmt = stmt.where(E.c.record_id == q.record_id)
    if q.decision_id:
        stmt = stmt.where(E.c.decision_id == q.decision_id)
    if q.since is not None:
        stmt = stmt.where(E.c.at >= stamp(q.since))
    if q.until is not None:
        stmt = stmt.where(E.c.at < stamp(q.until))
    rows = conn.execute(stmt.order_by(E.c.seq).limit(limit + 1)).fetchall()
    entries = [_entry(r) for r in rows[:limit]]
    return Page(entries, entries[-1].seq if len(rows) > limit else 0)
