"""Audit entries the store refused, kept apart with the reason (never silently lost).

The writer isolates such an entry by splitting its batch until the one entry that fails
alone is found (authz.audit.writer); the rest of the batch is written and the chain goes
on without it. What the store refused may be exactly what it cannot hold (a NUL byte on
PostgreSQL), so it is kept as escaped ASCII JSON, which every store can hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from authz.audit.chain import AuditEntry
from authz.store.audit_schema import audit_quarantine as Q
from authz.store.connect import WRITE

_DETAIL_MAX = 2000


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One refused entry, as `verify` reports it."""

    org_id: str
    decision_id: str
    quarantined_at: str
    reason: str  # a stable class ("the store refused the entry (DataError)")
    detail: str = ""  # the store's own text: for operators, never for clients
    entry: str = ""  # the entry's escaped JSON

    def __str__(self) -> str:
        return f"{self.org_id} decision {self.decision_id} quarantined at " \
               f"{self.quarantined_at}: {self.reason}"


def _escaped(text: str, limit: int) -> str:
    """Text any store can hold: control and non-ASCII characters as JSON escapes."""
    return json.dumps(text, ensure_ascii=True)[1:-1][:limit]


def keep(engine: Engine, refused: Sequence[tuple[AuditEntry, str, str]]) -> None:
    """Record (entry, reason, detail) triples in one transaction."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = [{"org_id": _escaped(e.org_id, 128), "decision_id": _escaped(e.decision_id, 64),
             "quarantined_at": now, "reason": reason[:64],
             "detail": _escaped(detail, _DETAIL_MAX),
             "entry": json.dumps(dataclasses.asdict(e), sort_keys=True, ensure_ascii=True)}
            for e, reason, detail in refused]
    if not rows:
        return
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            conn.execute(Q.insert(), rows)


def listed(conn: Connection, org_id: str, limit: int = 100) -> tuple[int, list[Quarantined]]:
    """How many of the organization's entries are quarantined, and the first `limit`."""
    key = _escaped(org_id, 128)
    n = conn.execute(sa.select(sa.func.count()).select_from(Q).where(Q.c.org_id == key)).scalar()
    rows = conn.execute(sa.select(Q).where(Q.c.org_id == key).order_by(Q.c.id).limit(limit))
    return int(n or 0), [Quarantined(r.org_id, r.decision_id, r.quarantined_at, r.reason,
                                     r.detail, r.entry) for r in rows]


def known(engine: Engine, decision_ids: Sequence[str]) -> set[str]:
    """The ids among `decision_ids` recorded in the trail or kept in the quarantine."""
    from authz.store.audit_schema import audit_entries as E

    ids = list(set(decision_ids))
    if not ids:
        return set()
    escaped = {_escaped(i, 64): i for i in ids}
    with engine.connect() as conn:
        found = {r[0] for r in conn.execute(sa.select(E.c.decision_id).where(
            E.c.decision_id.in_([i for i in ids if "\x00" not in i])))}
        found |= {escaped[r[0]] for r in conn.execute(sa.select(Q.c.decision_id).where(
            Q.c.decision_id.in_(list(escaped))))}
    return found
