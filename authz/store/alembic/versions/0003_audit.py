"""Audit trail: hash-chained entries per organization and a head row per organization.

Revision ID: 0003_audit
Revises: 0002_migration
Create Date: 2025-06-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_audit"
down_revision: str | None = "0002_migration"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("org_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("crm_user", sa.String(320), nullable=False),
        sa.Column("acting_kind", sa.String(32), nullable=False),
        sa.Column("acting_id", sa.String(320), nullable=False),
        sa.Column("action", sa.String(256), nullable=False),
        sa.Column("module", sa.String(256), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("policy_revision", sa.String(128), nullable=False),
        sa.Column("directory_revision", sa.BigInteger, nullable=False),
        sa.Column("caller", sa.String(256), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_entries_user", "audit_entries", ["org_id", "crm_user", "seq"])
    op.create_index("ix_audit_entries_record", "audit_entries", ["org_id", "record_id", "seq"])
    op.create_index("ix_audit_entries_at", "audit_entries", ["org_id", "at"])
    op.create_index("ix_audit_entries_decision", "audit_entries", ["decision_id"])
    op.create_table(
        "audit_heads",
        sa.Column("org_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("checkpoint_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("checkpoint_hash", sa.String(64), nullable=False),
        sa.Column("trimmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("audit_heads")
    for name in ("ix_audit_entries_decision", "ix_audit_entries_at", "ix_audit_entries_record",
                 "ix_audit_entries_user"):
        op.drop_index(name, "audit_entries")
    op.drop_table("audit_entries")
