"""Persistent state: the directory (and, in later revisions, migration jobs, outbox, audit).

SQLAlchemy Core over SQLite (one server) or PostgreSQL (several replicas); schema changes
are Alembic revisions under authz/store/alembic/versions.
"""

from authz.store.connect import DEFAULT_URL
from authz.store.store import Store, open_store

__all__ = ["DEFAULT_URL", "Store", "open_store"]
