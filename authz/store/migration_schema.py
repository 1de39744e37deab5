"""Tables for migration jobs, the notification outbox and operator quota raises.

Same metadata as authz.store.schema (imported at its end), created by Alembic revision
0002_migration. Kept in its own module so the directory schema stays readable.
"""

from __future__ import annotations

import sqlalchemy as sa

from authz.store.metadata import metadata

# One row per apply request. (org_id, request_key) makes apply idempotent: a retried
# request finds its job instead of starting a second one.
migration_jobs = sa.Table(
    "migration_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), nullable=False),
    sa.Column("request_key", sa.String(128), nullable=False),
    # Hash of the selection: the same key with a different selection is an error.
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
    # Directory revision after the job's last change; Check accepts it as min_revision.
    sa.Column("revision", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("org_id", "request_key", name="uq_migration_jobs_request_key"),
    sa.CheckConstraint("state IN ('pending', 'running', 'done')", name="ck_migration_jobs_state"),
    sa.CheckConstraint("kind IN ('manual', 'auto')", name="ck_migration_jobs_kind"),
    sa.Index("ix_migration_jobs_state", "state"),
)

# One row per selected user; a pending item is what a resumed job still has to do.
migration_job_items = sa.Table(
    "migration_job_items",
    metadata,
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

# Notices written in the same transaction as the change they announce; the unique key
# (org, user, kind, version) is what makes "never twice" hold even if enqueued twice.
outbox = sa.Table(
    "outbox",
    metadata,
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
    # A sender leases a row before talking SMTP so two replicas never send it both.
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("org_id", "crm_user_id", "kind", "version", name="uq_outbox_notice"),
    sa.Index("ix_outbox_due", "sent_at", "next_attempt_at"),
)

# Quota set by an operator; overrides the manifest's integration_user_quota.
integration_quotas = sa.Table(
    "integration_quotas",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("quota", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Who raised a quota, when and why: raising it is an audited support action.
quota_changes = sa.Table(
    "quota_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), nullable=False),
    sa.Column("old_quota", sa.Integer, nullable=False),
    sa.Column("new_quota", sa.Integer, nullable=False),
    sa.Column("operator", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Organizations that signed up in unified mode: no window, no automatic migration.
org_signups = sa.Table(
    "org_signups",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("signed_up_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("admin_crm_user_id", sa.String(128), nullable=False),
)

# Where an organization is in its move to the unified mode (DOMAIN.md §6), as the server
# recorded it: the day the phased release reached it (its three-month window starts),
# and when and how it became unified. No row: the release has not been seen yet.
org_migration = sa.Table(
    "org_migration",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("release_reached_on", sa.Date, nullable=True),
    sa.Column("unified_at", sa.DateTime(timezone=True), nullable=True),
    # saved (an admin's migration), window_ended (the automatic migration), signup (a new
    # organization), import (a directory carrying integration users: migrated elsewhere).
    sa.Column("unified_by", sa.String(16), nullable=True),
)
