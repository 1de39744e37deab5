"""Engines for the two supported databases, configured so the store code is identical.

SQLite (one file, one server): WAL so readers never block the writer, a busy timeout so
writers queue instead of failing, foreign keys on, and transactions we begin ourselves:
pysqlite's own implicit BEGIN is off, plain BEGIN for reads and BEGIN IMMEDIATE for
writes, so two writers serialize at BEGIN instead of deadlocking on a lock upgrade.
PostgreSQL (several replicas): a pooled psycopg engine; writers lock the organization's
row, and snapshot loads run under REPEATABLE READ so all their queries see one commit.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine

DEFAULT_URL = "sqlite:///var/authz.db"
WRITE = "authz_write"  # execution option: this connection's transaction will write


def make_engine(url: str | URL, *, busy_timeout: float = 5.0, pool_size: int = 5,
                echo: bool = False) -> Engine:
    """An engine for `url`: sqlite:///path (parent directory created) or postgresql+psycopg://."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u, busy_timeout, echo)
    if u.get_backend_name() == "postgresql":
        # A bounded connect so that an unreachable database fails a request, not hangs it.
        connect_args = {} if "connect_timeout" in u.query else {"connect_timeout": 5}
        return sa.create_engine(u, pool_size=pool_size, max_overflow=pool_size * 2,
                                pool_pre_ping=True, echo=echo, connect_args=connect_args)
    raise ValueError(f"unsupported database URL {u.render_as_string(hide_password=True)!r}: "
                     "use sqlite:///path or postgresql+psycopg://...")


def _enable_wal(cur: Any, busy_timeout: float) -> None:
    """Switch a new database file to WAL. Several processes opening a fresh file at once
    race for the switch, and SQLite answers "locked" at once, busy timeout or not, so
    retry until one of them has done it (the mode then persists in the file)."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(u: URL, busy_timeout: float, echo: bool) -> Engine:
    db = u.database or ""
    if not db or db == ":memory:" or db.startswith("file:"):
        raise ValueError("the store needs an SQLite file (sqlite:///path/to/authz.db), not memory")
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(u, echo=echo, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _enable_wal(cur, busy_timeout)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def insert_ignore(conn: Connection, table: sa.Table, **values: Any) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, in whichever dialect `conn` speaks."""
    dialect = conn.dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:
        raise ValueError(f"unsupported dialect {dialect}")
    conn.execute(stmt)


def consistent_read(conn: Connection) -> Connection:
    """Make the next transaction see one commit across all its queries."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn  # SQLite: a read transaction in WAL mode is already a snapshot
