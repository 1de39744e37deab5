"""Schema migrations, run programmatically (no alembic.ini): `authz db upgrade` and tests.

On PostgreSQL an advisory lock serializes replicas that upgrade at the same time; on
SQLite the migration's write transaction does the same.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from authz.store.connect import WRITE

SCRIPT_LOCATION = Path(__file__).resolve().parent / "alembic"
_PG_LOCK_KEY = 0x617574687A  # "authz": any constant shared by every replica


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    if rev is None:
        raise RuntimeError(f"no migrations under {SCRIPT_LOCATION}")
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never upgraded)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, target: str = "head") -> str:
    """Bring the schema to `target`; returns the revision reached."""
    cfg = _config()
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})  # SQLite: BEGIN IMMEDIATE, one migrator at a time
        with conn.begin():
            if conn.dialect.name == "postgresql":  # released when this transaction ends
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
    reached = current(engine)
    if reached is None:
        raise RuntimeError("upgrade finished without a schema revision")
    return reached
