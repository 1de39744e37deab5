"""The audit trail in the store: append with a per-organization hash chain, query, export,
verify, retention, and usage counts for the automatic migration.

Appends lock the organization's head row (FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on
SQLite), so replicas appending to one organization's chain take turns and the chain
never forks. Entries are only ever inserted; retention deletes a *prefix* of a chain and
records where it ended (the checkpoint), so that `verify` still proves the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO, overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from authz.audit.chain import GENESIS, AuditEntry, Break, Unsealed, sealed_fields, verify
from authz.store import audit_quarantine
from authz.store.audit_quarantine import Quarantined
from authz.store.audit_query import _FIELDS, MAX_PAGE, Page, Query, _entry, _query, stamp
from authz.store.audit_schema import audit_entries as E
from authz.store.audit_schema import audit_heads as H
from authz.store.connect import WRITE, consistent_read, insert_ignore


@dataclass(frozen=True, slots=True)
class Head:
    """An organization's chain head and retention checkpoint."""

    org_id: str
    seq: int = 0
    hash: str = GENESIS
    checkpoint_seq: int = 0
    checkpoint_hash: str = GENESIS
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of verifying one organization's chain."""

    org_id: str
    checked: int
    head: Head
    breaks: list[Break]
    quarantined: int = 0  # entries the store refused, kept apart (audit_quarantine)
    quarantine: tuple[Quarantined, ...] = ()  # the first of them

    @property
    def ok(self) -> bool:
        return not self.breaks


class TrimRefused(Exception):
    """Retention would delete entries whose chain does not hold: evidence is kept."""


class AuditStore:
    """Audit entries in SQLite or PostgreSQL; safe to share across threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._has_head: set[str] = set()  # organizations whose head row exists

    # -- writes ------------------------------------------------------------------------

    def append(self, entries: Sequence[Unsealed],
               dropped: Mapping[str, int] | None = None) -> Sequence[AuditEntry]:
        """Seal and insert entries (their seq and hashes are assigned here) in one
        transaction; also adds `dropped` counts to the heads. Returns the sealed entries
        (built when read: the writer does not read them).

        One statement per step whatever the number of organizations: lock the heads (one
        SELECT ... FOR UPDATE, in org_id order), insert every entry (one executemany),
        move the heads (one executemany).
        """
        by_org: dict[str, list[Unsealed]] = defaultdict(list)
        for e in entries:
            by_org[e.org_id].append(e)
        drops = {k: v for k, v in (dropped or {}).items() if v}
        orgs = sorted(set(by_org) | set(drops))  # one lock order: no deadlock
        if not orgs:
            return _Sealed([])
        rows: list[tuple[Any, ...]] = []
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                heads = self._lock_heads(conn, orgs)
                moves = []
                for org_id in orgs:
                    seq, prev = heads[org_id]
                    for e in by_org.get(org_id, ()):
                        seq += 1
                        values = sealed_fields(e, prev, seq)
                        prev = values[-1]
                        rows.append(values)
                    moves.append({"o": org_id, "s": seq, "h": prev, "d": drops.get(org_id, 0)})
                if rows:  # the driver's executemany on tuples: no per-row parameter dicts
                    conn.exec_driver_sql(_insert_sql(conn), rows)
                conn.execute(_MOVE_HEAD, moves)
        return _Sealed(rows)

    def _lock_heads(self, conn: Connection, orgs: list[str]) -> dict[str, tuple[int, str]]:
        """Lock the head rows of `orgs` (sorted) and read their (seq, hash), creating the
        missing ones first. Which organizations already have a head is remembered (head rows
        are never deleted), so a steady stream costs one SELECT per transaction."""
        for org_id in orgs:
            if org_id not in self._has_head:
                _insert_head(conn, org_id)
        heads = _read_heads(conn, orgs)
        if len(heads) < len(orgs):  # a head remembered here is gone: create it again
            for org_id in orgs:
                if org_id not in heads:
                    _insert_head(conn, org_id)
            heads = _read_heads(conn, orgs)
        self._has_head.update(orgs)
        return heads

    @staticmethod
    def _lock_head(conn: Connection, org_id: str) -> Head:
        _insert_head(conn, org_id)
        row = conn.execute(sa.select(H).where(H.c.org_id == org_id).with_for_update()).one()
        return _head(row)

    def trim(self, before: dt.datetime, org_id: str | None = None, *,
             dry_run: bool = False) -> dict[str, int]:
        """Retention: delete each organization's oldest entries recorded before `before`
        (`dry_run`: verify and count them, delete nothing).

        Only a prefix of a chain goes (up to the newest entry older than `before`), and only
        after it verifies: trimming must never destroy the evidence of tampering. The head
        keeps the last trimmed entry's (seq, hash) as the checkpoint verify starts from.
        Returns entries deleted per organization.
        """
        cutoff = stamp(before)
        out: dict[str, int] = {}
        for org in [org_id] if org_id else self.org_ids():
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    head = self._lock_head(conn, org)
                    last = conn.execute(sa.select(sa.func.max(E.c.seq)).where(
                        E.c.org_id == org, E.c.at < cutoff)).scalar()
                    if not last:
                        continue
                    doomed = [_entry(r) for r in conn.execute(
                        sa.select(E).where(E.c.org_id == org, E.c.seq <= last).order_by(E.c.seq))]
                    breaks = verify(doomed, head.checkpoint_hash, head.checkpoint_seq + 1)
                    if breaks:
                        raise TrimRefused(f"{org}: not trimming entries that do not verify: "
                                          + "; ".join(map(str, breaks[:5])))
                    if dry_run:
                        out[org] = len(doomed)
                        continue
                    conn.execute(E.delete().where(E.c.org_id == org, E.c.seq <= last))
                    conn.execute(H.update().where(H.c.org_id == org).values(
                        checkpoint_seq=last, checkpoint_hash=doomed[-1].hash,
                        trimmed_at=dt.datetime.now(dt.UTC)))
                    out[org] = len(doomed)
        return out

    # -- reads -------------------------------------------------------------------------

    def org_ids(self) -> list[str]:
        """Organizations with a chain."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(H.c.org_id).order_by(H.c.org_id))]

    def head(self, org_id: str) -> Head:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(H).where(H.c.org_id == org_id)).first()
        return _head(row) if row is not None else Head(org_id)

    def decision(self, decision_id: str) -> AuditEntry | None:
        """The recorded Check decision with this id (attributions cite it)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(E).where(E.c.decision_id == decision_id, E.c.kind == "check")
                               .limit(1)).first()
        return _entry(row) if row is not None else None

    def query(self, q: Query) -> Page:
        """One page of an organization's entries in chain order, narrowed by `q`."""
        with self.engine.connect() as conn:
            return _query(conn, q)

    def entries(self, org_id: str, since: dt.datetime | None = None,
                until: dt.datetime | None = None) -> Iterator[AuditEntry]:
        """Every entry of the organization in chain order, streamed a page at a time."""
        after = 0
        while True:
            page = self.query(Query(org_id, since=since, until=until, after_seq=after, limit=MAX_PAGE))
            yield from page.entries
            if not page.next_after:
                return
            after = page.next_after

    def verify(self, org_id: str) -> Verdict:
        """Walk the chain from the retention checkpoint to the head; name what does not hold.

        One consistent prefix: the head and the entries are read in one snapshot (one
        REPEATABLE READ transaction on PostgreSQL, one WAL read transaction on SQLite), and
        only entries up to the head read there are walked. Appends commit entries and head
        together, so a trail being written meanwhile is verified up to that head, never
        reported broken; a concurrent trim is not seen half done.
        """
        with self.engine.connect() as conn, consistent_read(conn).begin():
            row = conn.execute(sa.select(H).where(H.c.org_id == org_id)).first()
            head = _head(row) if row is not None else Head(org_id)
            n = 0

            def counted() -> Iterator[AuditEntry]:
                nonlocal n
                after = head.checkpoint_seq
                while True:
                    page = _query(conn, Query(org_id, after_seq=after, limit=MAX_PAGE),
                                  through=head.seq)
                    n += len(page.entries)
                    yield from page.entries
                    if not page.next_after:
                        return
                    after = page.next_after

            breaks = verify(counted(), head.checkpoint_hash, head.checkpoint_seq + 1,
                            (head.seq, head.hash), org_id)
            count, first = audit_quarantine.listed(conn, org_id)
        return Verdict(org_id, n, head, breaks, count, tuple(first))

    def quarantine(self, refused: Sequence[tuple[AuditEntry, str, str]]) -> None:
        """Keep (entry, reason, detail) apart: entries the store refused (see
        authz.store.audit_quarantine)."""
        audit_quarantine.keep(self.engine, refused)

    def known(self, decision_ids: Sequence[str]) -> set[str]:
        """Which of these ids are already in the trail or its quarantine: a shipper that
        resumes a log after a crash skips them (nothing twice)."""
        return audit_quarantine.known(self.engine, decision_ids)

    @staticmethod
    def refused(exc: Exception) -> str:
        """Why the store refused a write's data (authz.audit.writer.Sink.refused), or ""
        when the failure is the store's own: unreachable, disconnected, locked, timed out
        (OperationalError, InterfaceError, pool errors), which a retry may cure."""
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated or isinstance(
                    exc, sa.exc.OperationalError | sa.exc.InterfaceError):
                return ""
            return f"the store refused the entry ({type(exc).__name__})"
        if isinstance(exc, sa.exc.StatementError | ValueError | TypeError):
            return "the store refused the entry (its values)"  # failed binding the parameters
        return ""

    def export(self, out: TextIO, org_id: str | None = None, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> int:
        """Write entries as JSON lines (every field, hashes included, so a copy verifies)."""
        n = 0
        for org in [org_id] if org_id else self.org_ids():
            for e in self.entries(org, since, until):
                out.write(json.dumps(dataclasses.asdict(e), sort_keys=True, ensure_ascii=False) + "\n")
                n += 1
        return n

    def usage(self, org_id: str, since: dt.datetime) -> dict[tuple[str, str], int]:
        """Allowed finance operations per (CRM user, module) since `since`: what the
        automatic migration ranks users by (DOMAIN §6: operations they actually performed
        on the finance modules). A denied Check is no operation, and settings is no
        finance module; during the window the organization is legacy, so the operations
        its users take through the integration owner are allowed, and counted.
        """
        with self.engine.connect() as conn:
            return _usage(conn, org_id, since)

    def usage_by_user(self, org_id: str, since: dt.datetime) -> dict[str, int]:
        """Checks per CRM user since `since` (see `usage`)."""
        return usage_by_user(self.engine, org_id, since)


# The heads after an append: one executemany, parameters o (org), s, h (new seq, hash), d
# (entries dropped since the last append).
_MOVE_HEAD = (H.update().where(H.c.org_id == sa.bindparam("o"))
              .values(seq=sa.bindparam("s"), hash=sa.bindparam("h"),
                      dropped=H.c.dropped + sa.bindparam("d")))


_INSERT_SQL: dict[str, str] = {}


def _insert_sql(conn: Connection) -> str:
    """INSERT of one entry row in the driver's own parameter style (positional, in
    AuditEntry field order), for Connection.exec_driver_sql."""
    style = conn.dialect.paramstyle
    sql = _INSERT_SQL.get(style)
    if sql is None:
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}[style]
        quote = conn.dialect.identifier_preparer.quote
        sql = (f"INSERT INTO {quote(E.name)} ({', '.join(quote(f) for f in _FIELDS)}) "
               f"VALUES ({', '.join([mark] * len(_FIELDS))})")
        _INSERT_SQL[style] = sql
    return sql


class _Sealed(Sequence[AuditEntry]):
    """Sealed entries as inserted (field tuples), each made an AuditEntry when read."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> AuditEntry: ...
    @overload
    def __getitem__(self, i: slice) -> list[AuditEntry]: ...
    def __getitem__(self, i: int | slice) -> AuditEntry | list[AuditEntry]:
        if isinstance(i, slice):
            return [AuditEntry(*r) for r in self._rows[i]]
        return AuditEntry(*self._rows[i])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


def _insert_head(conn: Connection, org_id: str) -> None:
    insert_ignore(conn, H, org_id=org_id, seq=0, hash=GENESIS, checkpoint_seq=0,
                  checkpoint_hash=GENESIS, dropped=0)


def _read_heads(conn: Connection, orgs: list[str]) -> dict[str, tuple[int, str]]:
    """(seq, hash) of the heads of `orgs`, locked (FOR UPDATE) in org_id order."""
    rows = conn.execute(sa.select(H.c.org_id, H.c.seq, H.c.hash).where(H.c.org_id.in_(orgs))
                        .order_by(H.c.org_id).with_for_update())
    return {org_id: (int(seq), hash_) for org_id, seq, hash_ in rows}


def _head(row: Any) -> Head:
    m = row._mapping
    return Head(m["org_id"], int(m["seq"]), m["hash"], int(m["checkpoint_seq"]),
                m["checkpoint_hash"], int(m["dropped"]))


def _usage(conn: Connection, org_id: str, since: dt.datetime) -> dict[tuple[str, str], int]:
    stmt = (sa.select(E.c.crm_user, E.c.module, sa.func.count())
            .where(E.c.org_id == org_id, E.c.kind == "check", E.c.at >= stamp(since),
                   E.c.allowed.is_(True), E.c.module != "settings")
            .group_by(E.c.crm_user, E.c.module))
    return {(u, m): int(c) for u, m, c in conn.execute(stmt)}


def usage_by_user(db: Engine | Connection, org_id: str, since: dt.datetime) -> dict[str, int]:
    """Allowed finance operations per CRM user in the trail since `since` (see
    `AuditStore.usage`), for the automatic migration (§6).

    Takes an engine, or a connection so that a migration job can read usage inside its
    own transaction.
    """
    if isinstance(db, Engine):
        with db.connect() as conn:
            per_module = _usage(conn, org_id, since)
    else:
        per_module = _usage(db, org_id, since)
    out: dict[str, int] = defaultdict(int)
    for (user, _module), count in per_module.items():
        out[user] += count
    return dict(out)
