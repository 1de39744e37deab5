"""The store: an organization's directory in SQLite or PostgreSQL, served from memory.

Writes (`import_directory`) go to the database in one transaction and bump the
organization's directory revision when, and only when, something changed. Reads
(`snapshot`, called on every decision) come from an in-memory snapshot per organization;
the database is asked again only when the snapshot is `refresh_interval` old (one cheap
revision query) or when a caller asks for a revision newer than the one cached
(read-your-writes across replicas, bounded by `revision_wait`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from authz.budget import current as current_budget
from authz.directory import CrmUser, DirectorySnapshot, FinanceUser, IntegrationUser, OrgMode
from authz.errors import FailedPrecondition, InvalidArgument
from authz.store import orgmode, rows, schema, schema_upgrade
from authz.store.cache import Entry, SnapshotCache
from authz.store.connect import DEFAULT_URL, WRITE, consistent_read, insert_ignore, make_engine

log = logging.getLogger("authz.store")
_ORG_ID_MAX = 128  # schema.organizations.c.org_id


def _build(org_id: str, revision: int, crm: Mapping[rows.Key, rows.Values],
           finance: Mapping[rows.Key, rows.Values],
           integration: Mapping[rows.Key, rows.Values], mode: OrgMode) -> DirectorySnapshot:
    """One builder for both the load and the write path, so their snapshots are identical."""
    return DirectorySnapshot.build(
        org_id, revision,
        (rows.CRM.from_row(k, v) for k, v in crm.items()),
        (rows.FINANCE.from_row(k, v) for k, v in finance.items()),
        (rows.INTEGRATION.from_row(k, v) for k, v in integration.items()),
        mode,
    )


class Store:
    """Directory storage with a per-organization snapshot cache; safe to share across threads."""

    def __init__(self, engine: Engine, *, refresh_interval: float = 1.0, revision_wait: float = 2.0,
                 revision_poll: float = 0.025, max_staleness: float = 30.0,
                 cache_size: int = 20_000, max_revision_waiters: int = 4) -> None:
        self.engine = engine
        # Waits for a revision hold a worker thread each: a flood of unreachable
        # `min_revision`s must not take every thread from every other organization.
        self._waiters = threading.BoundedSemaphore(max_revision_waiters)
        self.refresh_interval = refresh_interval
        self.max_staleness = max_staleness
        self.revision_wait = revision_wait
        self.revision_poll = revision_poll
        self._cache = SnapshotCache(cache_size)
        self._closed = threading.Event()
        # One freshness check for every organization (`watch_revisions`): each org's
        # committed revision as of `_fresh_at`, re-read whole only when the table moved.
        self._known: dict[str, int] = {}
        self._fresh_at = float("-inf")
        self._table_sig: tuple[int, int] | None = None
        self._check_lock = threading.Lock()
        self._ping_conn: Connection | None = None
        self._ping_lock = threading.Lock()

    # -- schema ------------------------------------------------------------------------

    def upgrade(self) -> str:
        """Run Alembic migrations up to head; returns the schema revision reached."""
        return schema_upgrade.upgrade(self.engine)

    def schema_revision(self) -> str | None:
        """The database's schema revision (None: never upgraded)."""
        return schema_upgrade.current(self.engine)

    def require_current_schema(self) -> None:
        """Fail early (at server start) rather than on the first request after a deploy."""
        at, head = self.schema_revision(), schema_upgrade.head()
        if at != head:
            raise FailedPrecondition(f"database schema at {at or 'nothing'}, this code needs {head}: "
                                     "run `authz db upgrade`")

    # -- reads -------------------------------------------------------------------------

    def revision(self, org_id: str) -> int:
        """The organization's directory revision as committed in the database (0: none yet)."""
        with self.engine.connect() as conn:
            return self._read_revision(conn, org_id)

    def cached(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot | None:
        """What `snapshot` would return without touching the database, else None: the
        server decides on its event loop when this answers, in a worker thread otherwise."""
        entry = self._cache.get(org_id)
        if entry is not None and self._fresh(org_id, entry, min_revision):
            return entry.snapshot
        return None

    def _fresh(self, org_id: str, entry: Entry, min_revision: int) -> bool:
        """Whether `entry` may answer without a database read: at `min_revision`, and its
        revision confirmed less than `refresh_interval` ago, by its own poll or by the
        store-wide check (which saw no newer revision of this organization)."""
        rev = entry.snapshot.revision
        if rev < min_revision:
            return False
        now = time.monotonic()
        if now - entry.checked_at < self.refresh_interval:
            return True
        return now - self._fresh_at < self.refresh_interval and rev >= self._known.get(org_id, 0)

    def snapshot(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot:
        """The organization's directory, at `min_revision` or later (the decision hot path)."""
        entry = self._cache.get(org_id)
        if entry is not None and self._fresh(org_id, entry, min_revision):
            return entry.snapshot
        lock = self._cache.org_lock(org_id)
        if entry is not None and entry.snapshot.revision >= min_revision:
            return self._refresh_by_age(org_id, min_revision, entry, lock)
        return self._wait_for(org_id, min_revision, lock)

    def _refresh_by_age(self, org_id: str, min_revision: int, entry: Entry,
                        lock: threading.Lock) -> DirectorySnapshot:
        """The cached snapshot would do but is due a poll: one thread polls while the others
        keep serving it. If the database is unreachable, decisions go on with the cached
        snapshot for up to `max_staleness` seconds (retrying once per refresh interval)
        rather than every decision failing with it."""
        if time.monotonic() - self._fresh_at >= self.refresh_interval:
            # One store-wide check (one thread runs it; the others serve what they have)
            # instead of a poll per organization: every organization is confirmed at once.
            if not self._check_lock.acquire(blocking=False):
                return entry.snapshot
            try:
                self.check_revisions()
            except sa.exc.DBAPIError:
                pass  # the per-organization path below handles an unreachable database
            finally:
                self._check_lock.release()
            if self._fresh(org_id, entry, min_revision):
                return entry.snapshot
        if entry.snapshot.revision >= self._known.get(org_id, 0):
            # What the store-wide check confirmed counts as confirmed (max_staleness
            # runs from there when the database goes away).
            entry.checked_at = max(entry.checked_at, self._fresh_at)
        now = time.monotonic()
        if now - entry.failed_at < self.refresh_interval and now - entry.checked_at < self.max_staleness:
            return entry.snapshot
        if not lock.acquire(blocking=False):
            return entry.snapshot
        try:
            snap, _ = self._poll_or_load(org_id, min_revision)
        except sa.exc.DBAPIError as exc:
            entry.failed_at = time.monotonic()
            if entry.failed_at - entry.checked_at >= self.max_staleness:
                raise
            log.warning("directory of %s not refreshed, serving revision %d: %s",
                        org_id, entry.snapshot.revision, exc.orig or exc)
            return entry.snapshot
        finally:
            lock.release()
        return snap or entry.snapshot

    def _wait_for(self, org_id: str, min_revision: int, lock: threading.Lock) -> DirectorySnapshot:
        """Poll the revision (no lock held while sleeping) until it reaches `min_revision`.

        The wait draws on the request's budget (authz.budget): every wait of one request
        ends by the same time, at most `revision_wait` after its first wait and never
        after the call's deadline, and ends early when the caller goes away."""
        if min_revision <= 0:
            return self._wait_loop(org_id, min_revision, lock)
        if not self._waiters.acquire(blocking=False):
            raise FailedPrecondition(f"directory revision {min_revision} not reached: too many "
                                     "calls are waiting for a revision; ask again shortly")
        try:
            return self._wait_loop(org_id, min_revision, lock)
        finally:
            self._waiters.release()

    def _wait_loop(self, org_id: str, min_revision: int, lock: threading.Lock) -> DirectorySnapshot:
        budget = current_budget()
        deadline = budget.wait_until(self.revision_wait) if min_revision > 0 else 0.0
        seen = -1
        while True:
            # Without a revision to wait for (a cold cache), queue behind the loading thread
            # however long a large organization takes to load; otherwise keep to the bound.
            timeout = -1.0 if min_revision <= 0 else max(deadline - time.monotonic(), 0.001)
            if lock.acquire(timeout=timeout):
                try:
                    snap, seen = self._poll_or_load(org_id, min_revision)
                finally:
                    lock.release()
                if snap is not None:
                    return snap
            remaining = deadline - time.monotonic()
            if remaining <= 0 or budget.cancelled:
                if seen < 0:
                    entry = self._cache.get(org_id)
                    seen = entry.snapshot.revision if entry else self.revision(org_id)
                raise FailedPrecondition(f"directory revision {min_revision} not reached; at {seen}")
            if not budget.sleep(min(self.revision_poll, remaining)):
                raise FailedPrecondition(f"directory revision {min_revision} not reached; at "
                                         f"{seen} (the caller went away)")

    def _poll_or_load(self, org_id: str, min_revision: int) -> tuple[DirectorySnapshot | None, int]:
        """Under the organization's lock: the snapshot if `min_revision` is committed (else
        None) and the revision seen. Loads the rows only when the revision moved."""
        entry = self._cache.get(org_id)
        now = time.monotonic()
        if (entry is not None and entry.snapshot.revision >= min_revision
                and now - entry.checked_at < self.refresh_interval):
            return entry.snapshot, entry.snapshot.revision  # another thread just refreshed it
        with self.engine.connect() as conn:
            rev = self._read_revision(conn, org_id)
        if rev < min_revision:
            return None, rev
        if entry is not None and self._cache.confirm(org_id, rev, now):
            return entry.snapshot, rev
        snap = self._load(org_id)
        return self._cache.put(snap, now), snap.revision

    @staticmethod
    def _read_revision(conn: Connection, org_id: str) -> int:
        o = schema.organizations
        rev = conn.execute(sa.select(o.c.directory_revision).where(o.c.org_id == org_id)).scalar()
        return int(rev or 0)

    def _load(self, org_id: str) -> DirectorySnapshot:
        """Every row of the organization, read in one consistent transaction."""
        with self.engine.connect() as c:
            conn = consistent_read(c)
            with conn.begin():
                rev = self._read_revision(conn, org_id)
                return _build(org_id, rev, rows.CRM.read(conn, org_id), rows.FINANCE.read(conn, org_id),
                              rows.INTEGRATION.read(conn, org_id), orgmode.read_mode(conn, org_id))

    def ping(self) -> None:
        """Prove the database answers (the health probe, once a second): `SELECT 1` on one
        connection kept for it, through its driver (~85 µs of an idle server's cold-cache
        CPU, against ~400 µs through SQLAlchemy's execute path and ~650 µs for a pool
        checkout and a revision read: issue 13). A failed kept connection is dropped and
        the ping retried once on a new one (a restarted server is not an outage). One ping
        at a time: a ping still stuck on a wedged database makes the next one fail at once."""
        if not self._ping_lock.acquire(blocking=False):
            raise FailedPrecondition("the previous database probe has not returned")
        try:
            for attempt in (1, 2):  # a kept connection the server dropped: retry on a new one
                if self._ping_conn is None:
                    self._ping_conn = self.engine.connect()
                try:
                    raw = self._ping_conn.connection.dbapi_connection
                    if raw is None:
                        raise ConnectionError("the probe's connection is closed")
                    cur = raw.cursor()
                    try:
                        cur.execute("SELECT 1")
                        cur.fetchone()
                    finally:
                        cur.close()
                    raw.rollback()  # PostgreSQL: end the transaction the driver began
                    return
                except Exception:
                    conn, self._ping_conn = self._ping_conn, None
                    with contextlib.suppress(Exception):
                        conn.invalidate()
                    if attempt == 2:
                        raise
        finally:
            self._ping_lock.release()

    def check_revisions(self) -> int:
        """The store-wide freshness check: one aggregate query over every organization's
        revision; the revisions themselves are re-read only when it moved (an import, a
        migration job, here or on another replica). Snapshots at the revisions seen count
        as fresh for `refresh_interval` from the start of the check, so organizations need
        no poll of their own. Run on demand: by the first decision that finds the last
        check `refresh_interval` old (nothing runs while no decision is asked, so an idle
        server does no work). Returns how many organizations the database has."""
        o = schema.organizations
        started = time.monotonic()
        with self.engine.connect() as conn:
            count, total = conn.execute(sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(o.c.directory_revision), 0))).one()
            sig = (int(count), int(total))
            if sig != self._table_sig:
                rows_ = conn.execute(sa.select(o.c.org_id, o.c.directory_revision)).all()
                self._known = {org: int(rev) for org, rev in rows_}
                self._table_sig = sig
        self._fresh_at = started
        return sig[0]

    # -- writes ------------------------------------------------------------------------

    def import_directory(self, org_id: str, crm_users: Iterable[CrmUser],
                         finance_users: Iterable[FinanceUser],
                         integration_users: Iterable[IntegrationUser] = (), *, replace: bool = False,
                         source: str = "import", permission_set_version: int | None = None,
                         integration_quota: object = None) -> int:
        """Upsert users in one transaction; returns the directory revision afterwards.

        The revision is bumped only when a row changed, so re-importing the same data is a
        no-op. With `replace`, CRM and finance users not listed are deleted, and so are the
        integration users of deleted CRM users; integration users are otherwise only ever
        added or updated here. Raises InvalidArgument, with nothing written, for duplicates,
        bad values, or an integration user who is unknown or already a finance user.
        """
        if not org_id or len(org_id) > _ORG_ID_MAX:
            raise InvalidArgument("org_id", f"must be 1 to {_ORG_ID_MAX} characters")
        crm_in = rows.CRM.index(crm_users)
        fin_in = rows.FINANCE.index(finance_users)
        integ_in = rows.INTEGRATION.index(integration_users)
        now = dt.datetime.now(dt.UTC)
        o = schema.organizations
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                insert_ignore(conn, o, org_id=org_id, directory_revision=0)
                rev = int(conn.execute(sa.select(o.c.directory_revision).where(o.c.org_id == org_id)
                                       .with_for_update()).scalar_one())
                crm_d = rows.diff(rows.CRM.read(conn, org_id), crm_in, replace)
                fin_d = rows.diff(rows.FINANCE.read(conn, org_id), fin_in, replace)
                integ_d = rows.diff(rows.INTEGRATION.read(conn, org_id), integ_in, replace=False)
                if replace:  # a CRM user leaving the directory takes their integration user along
                    integ_d.deletes = [k for k in integ_d.merged
                                       if k not in integ_in and k not in crm_d.merged]
                    for k in integ_d.deletes:
                        del integ_d.merged[k]
                rows.check_integration_users(crm_d.merged, fin_d.merged, integ_d.merged, integ_in)
                if integration_quota is not None and integ_d.inserts:
                    rows.check_quota(conn, org_id, integration_quota, integ_d.merged)
                diffs = (crm_d, fin_d, integ_d)
                # Integration users exist only through a migration: a directory that
                # carries them comes from an organization that has migrated (§6).
                moved = bool(integ_in) and orgmode.mark_unified(conn, org_id, orgmode.IMPORT, now)
                if moved or any(d.changed for d in diffs):
                    rows.apply(conn, rows.INTEGRATION, org_id, rows.Diff(deletes=integ_d.deletes))
                    integ_d.deletes = []
                    rows.apply(conn, rows.CRM, org_id, crm_d)
                    rows.apply(conn, rows.FINANCE, org_id, fin_d)
                    rows.apply(conn, rows.INTEGRATION, org_id, integ_d,
                               {"created_at": now, "permission_set_version": permission_set_version})
                    rev = self._bump(conn, org_id, rev, now, source, diffs)
                snap = _build(org_id, rev, crm_d.merged, fin_d.merged, integ_d.merged,
                              orgmode.read_mode(conn, org_id))
        self._cache.put(snap)  # this Store reads its own write at once
        return rev

    @staticmethod
    def _bump(conn: Connection, org_id: str, rev: int, now: dt.datetime, source: str,
              diffs: Iterable[rows.Diff]) -> int:
        ds = list(diffs)
        return Store.bump_revision(conn, org_id, rev, now, source, sum(len(d.inserts) for d in ds),
                                   sum(len(d.updates) for d in ds), sum(len(d.deletes) for d in ds))

    @staticmethod
    def lock_revision(conn: Connection, org_id: str) -> int:
        """For writers owning a write transaction (migration jobs): lock the organization's
        row (FOR UPDATE; SQLite's BEGIN IMMEDIATE already serializes) and read its revision."""
        o = schema.organizations
        insert_ignore(conn, o, org_id=org_id, directory_revision=0)
        return int(conn.execute(sa.select(o.c.directory_revision).where(o.c.org_id == org_id)
                                .with_for_update()).scalar_one())

    @staticmethod
    def bump_revision(conn: Connection, org_id: str, rev: int, now: dt.datetime, source: str,
                      inserted: int = 0, updated: int = 0, deleted: int = 0) -> int:
        """Record a directory change inside the caller's transaction, after `lock_revision`;
        call `invalidate(org_id)` once it commits."""
        o = schema.organizations
        conn.execute(o.update().where(o.c.org_id == org_id)
                     .values(directory_revision=rev + 1, updated_at=now))
        conn.execute(schema.directory_revisions.insert().values(
            org_id=org_id, revision=rev + 1, created_at=now, source=source[:64],
            inserted=inserted, updated=updated, deleted=deleted))
        return rev + 1

    # -- lifecycle ---------------------------------------------------------------------

    def invalidate(self, org_id: str | None = None) -> None:
        """Drop cached snapshots (one organization or all); the next read reloads."""
        self._cache.invalidate(org_id)

    def close(self) -> None:
        """Release the connection pool; the Store is not usable afterwards."""
        if not self._closed.is_set():
            self._closed.set()
            if self._ping_conn is not None and self._ping_lock.acquire(timeout=5):
                with contextlib.suppress(Exception):
                    self._ping_conn.close()
                self._ping_conn = None
                self._ping_lock.release()
            self._cache.invalidate()
            self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_store(url: str = DEFAULT_URL, *, refresh_interval: float = 1.0, revision_wait: float = 2.0,
               max_staleness: float = 30.0, busy_timeout: float = 5.0, cache_size: int = 20_000,
               pool_size: int = 5, upgrade: bool = False, echo: bool = False,
               max_revision_waiters: int = 4) -> Store:
    """Open the store at `url` (sqlite:///path, created if missing, or postgresql+psycopg://...).

    `upgrade=True` runs migrations first (tests, single-node set-ups); replicas should rather
    run `authz db upgrade` once and call `require_current_schema()` at start.
    """
    engine = make_engine(url, busy_timeout=busy_timeout, pool_size=pool_size, echo=echo)
    store = Store(engine, refresh_interval=refresh_interval, revision_wait=revision_wait,
                  max_staleness=max_staleness, cache_size=cache_size,
                  max_revision_waiters=max_revision_waiters)
    if upgrade:
        store.upgrade()
    return store
