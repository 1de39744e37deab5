"""Organization migration state: release arrival (window start) and when it became unified.

Revision ID: 0005_org_migration
Revises: 0004_assigned_customers
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_org_migration"
down_revision: str | None = "0004_assigned_customers"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "org_migration",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("release_reached_on", sa.Date, nullable=True),
        sa.Column("unified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unified_by", sa.String(16), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("org_migration")
