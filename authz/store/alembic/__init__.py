"""Alembic environment and revisions for the store (run by authz.store.schema_upgrade)."""
