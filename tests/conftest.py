"""Shared test fixtures: the PostgreSQL server, when one is reachable.

`make test` runs PostgreSQL tests whenever 127.0.0.1:5432 answers and says loudly when
it skips them; with AUTHZ_REQUIRE_POSTGRES=1 (set by .ci/run) an unreachable server
fails the run instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("AUTHZ_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AUTHZ_PG_PORT", "5432"))
PG_DB = os.environ.get("AUTHZ_PG_DB", "test")
PG_USER = os.environ.get("AUTHZ_PG_USER", "postgres")
_skipped: list[str] = []


def postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    """Skip (loudly) or, under CI, fail when PostgreSQL is not reachable."""
    if postgres_reachable():
        return
    msg = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}"
    if os.environ.get("AUTHZ_REQUIRE_POSTGRES") == "1":
        pytest.fail(msg + " and AUTHZ_REQUIRE_POSTGRES=1: PostgreSQL tests are mandatory")
    _skipped.append(msg)
    pytest.skip(msg + ": PostgreSQL tests SKIPPED")


@contextlib.contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A URL whose search path is a new, empty schema in the test database, dropped
    afterwards. The helper keeps no pooled connection, so a server restart loses none."""
    require_postgres()
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"
    engine = sa.create_engine(base, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty schema in the test database; dropped afterwards."""
    with fresh_postgres_schema() as url:
        yield url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{len(_skipped)} PostgreSQL test(s) skipped: {_skipped[0]}")
