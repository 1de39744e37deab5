"""Directory: organizations with a revision counter, CRM, finance and integration users.

Revision ID: 0001_directory
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_directory"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("org_id", sa.String(128), primary_key=True),
        sa.Column("directory_revision", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "directory_revisions",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("revision", sa.BigInteger, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("inserted", sa.Integer, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False),
    )
    op.create_table(
        "crm_users",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_crm_users_status"),
    )
    op.create_index("ix_crm_users_email_key", "crm_users", ["org_id", "email_key"])
    op.create_table(
        "finance_users",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("role_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("locations", sa.Text, nullable=False),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="ck_finance_users_status"),
    )
    op.create_index("ix_finance_users_email_key", "finance_users", ["org_id", "email_key"])
    op.create_table(
        "integration_users",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("crm_user_id", sa.String(128), primary_key=True),
        sa.Column("integration_user_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("permission_set_version", sa.Integer, nullable=True),
        sa.UniqueConstraint("org_id", "integration_user_id", name="uq_integration_users_iu_id"),
        sa.ForeignKeyConstraint(
            ["org_id", "crm_user_id"], ["crm_users.org_id", "crm_users.id"],
            name="fk_integration_users_crm_user",
        ),
    )


def downgrade() -> None:
    op.drop_table("integration_users")
    op.drop_index("ix_finance_users_email_key", "finance_users")
    op.drop_table("finance_users")
    op.drop_index("ix_crm_users_email_key", "crm_users")
    op.drop_table("crm_users")
    op.drop_table("directory_revisions")
    op.drop_table("organizations")
