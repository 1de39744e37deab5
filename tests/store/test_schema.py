"""Migrations: from an empty database to head, idempotent, and matching the code's tables."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from authz.errors import FailedPrecondition
from authz.store import schema
from authz.store import schema_upgrade as migrations
from authz_server.cli import db as cli

from .conftest import OpenStore


def test_upgrade_from_empty_reaches_head_and_is_idempotent(open_: OpenStore) -> None:
    store = open_()
    assert store.schema_revision() is None
    with pytest.raises(FailedPrecondition, match="db upgrade"):
        store.require_current_schema()
    assert store.upgrade() == migrations.head()
    assert store.upgrade() == migrations.head()
    store.require_current_schema()
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"organizations", "directory_revisions", "crm_users", "finance_users",
            "integration_users"} <= names


def test_migrated_database_matches_the_code_tables(open_: OpenStore) -> None:
    store = open_()
    store.upgrade()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, schema.metadata) == []


def test_db_upgrade_command_prints_the_head(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["db", "upgrade", "--db", db_url])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith(f"{migrations.head()} (from empty)")
    assert args.func(args) == 0
    assert "already at head" in capsys.readouterr().out
    args = parser.parse_args(["db", "current", "--db", db_url])
    assert args.func(args) == 0


def test_memory_sqlite_is_refused() -> None:
    from authz.store import open_store

    with pytest.raises(ValueError, match="SQLite file"):
        open_store("sqlite://")


def test_replicas_upgrading_at_once_all_reach_head(open_: OpenStore) -> None:
    stores = [open_() for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        reached = list(pool.map(lambda s: s.upgrade(), stores))
    assert reached == [migrations.head()] * 3
