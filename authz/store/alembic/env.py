"""Alembic environment: always handed a live connection by authz.store.schema_upgrade.

No alembic.ini and no URL here: the store opens the engine (with its SQLite pragmas),
so migrations run on exactly the connection settings the server uses.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from authz.store.schema import metadata


def run_migrations_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("authz store migrations run through authz.store.schema_upgrade, not the alembic CLI")
run_migrations_online(_connection)
