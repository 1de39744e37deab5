"""Audit quarantine: entries the store refused, kept apart with the reason.

Revision ID: 0006_audit_quarantine
Revises: 0005_org_migration
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_audit_quarantine"
down_revision: str | None = "0005_org_migration"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("quarantined_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_quarantine_org", "audit_quarantine", ["org_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_quarantine_org", "audit_quarantine")
    op.drop_table("audit_quarantine")
