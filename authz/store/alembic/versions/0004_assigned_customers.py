"""Assigned customers per finance user: the customers whose contact owner the user is.

Revision ID: 0004_assigned_customers
Revises: 0003_audit
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_assigned_customers"
down_revision: str | None = "0003_audit"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A JSON array like `locations`: read with the user in the snapshot's one scan, and
    # compared by the import's row diff like every other column.
    with op.batch_alter_table("finance_users") as batch:
        batch.add_column(sa.Column("assigned_customers", sa.Text, nullable=False,
                                   server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("finance_users") as batch:
        batch.drop_column("assigned_customers")
