"""Migration jobs, per-user job items, the notification outbox, operator quota raises.

Revision ID: 0002_migration
Revises: 0001_directory
Create Date: 2025-06-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_migration"
down_revision: str | None = "0001_directory"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "migration_jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), nullable=False),
        sa.Column("request_key", sa.String(128), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revision", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("org_id", "request_key", name="uq_migration_jobs_request_key"),
        sa.CheckConstraint("state IN ('pending', 'running', 'done')", name="ck_migration_jobs_state"),
        sa.CheckConstraint("kind IN ('manual', 'auto')", name="ck_migration_jobs_kind"),
    )
    op.create_index("ix_migration_jobs_state", "migration_jobs", ["state"])
    op.create_table(
        "migration_job_items",
        sa.Column("job_id", sa.String(64), sa.ForeignKey("migration_jobs.job_id"), primary_key=True),
        sa.Column("crm_user_id", sa.String(128), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("integration_user_id", sa.String(128), nullable=True),
        sa.Column("revision", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done', 'rejected')", name="ck_migration_job_items_state"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("crm_user_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("org_id", "crm_user_id", "kind", "version", name="uq_outbox_notice"),
    )
    op.create_index("ix_outbox_due", "outbox", ["sent_at", "next_attempt_at"])
    op.create_table(
        "integration_quotas",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("quota", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quota_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), nullable=False),
        sa.Column("old_quota", sa.Integer, nullable=False),
        sa.Column("new_quota", sa.Integer, nullable=False),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "org_signups",
        sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
        sa.Column("signed_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("admin_crm_user_id", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("org_signups")
    op.drop_table("quota_changes")
    op.drop_table("integration_quotas")
    op.drop_index("ix_outbox_due", "outbox")
    op.drop_table("outbox")
    op.drop_table("migration_job_items")
    op.drop_index("ix_migration_jobs_state", "migration_jobs")
    op.drop_table("migration_jobs")
