"""The store's tables, as SQLAlchemy Core metadata the code queries through.

Alembic revisions under alembic/versions create these tables; they never import this
module (a revision is frozen history, this is the current shape). A test compares the
migrated database with this metadata so the two cannot drift apart.

Every row is keyed by org_id first: organizations never see each other's rows, and the
primary keys double as the per-organization indexes a snapshot load scans. Later issues
add migration jobs, the outbox and the audit trail as new revisions and tables here.
"""

from __future__ import annotations

import sqlalchemy as sa

from authz.store.metadata import metadata as metadata

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("org_id", sa.String(128), primary_key=True),
    # Bumped by every write that changes the organization's directory; caches poll it.
    sa.Column("directory_revision", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
)

# One row per revision: which write produced it and how much it changed (for operators
# and for the audit trail to point at; snapshots never read it).
directory_revisions = sa.Table(
    "directory_revisions",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("revision", sa.BigInteger, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("inserted", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Integer, nullable=False),
)

crm_users = sa.Table(
    "crm_users",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("email_key", sa.String(320), nullable=False),  # email_key(email): casefolded
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_crm_users_status"),
    sa.Index("ix_crm_users_email_key", "org_id", "email_key"),
)

finance_users = sa.Table(
    "finance_users",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("email_key", sa.String(320), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("role_id", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("locations", sa.Text, nullable=False),  # JSON array of location ids; [] = all
    # JSON array of the customer ids the user is contact owner of, sorted (revision 0004)
    sa.Column("assigned_customers", sa.Text, nullable=False, server_default="[]"),
    sa.CheckConstraint("status IN ('active', 'inactive')", name="ck_finance_users_status"),
    sa.Index("ix_finance_users_email_key", "org_id", "email_key"),
)

integration_users = sa.Table(
    "integration_users",
    metadata,
    sa.Column("org_id", sa.String(128), sa.ForeignKey("organizations.org_id"), primary_key=True),
    sa.Column("crm_user_id", sa.String(128), primary_key=True),
    sa.Column("integration_user_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Version of the integration-user permission set the user was last told about
    # (DOMAIN §6: told once per new version); NULL until a notice goes out.
    sa.Column("permission_set_version", sa.Integer, nullable=True),
    sa.UniqueConstraint("org_id", "integration_user_id", name="uq_integration_users_iu_id"),
    sa.ForeignKeyConstraint(
        ["org_id", "crm_user_id"], ["crm_users.org_id", "crm_users.id"], name="fk_integration_users_crm_user"
    ),
)

# Later revisions' tables live in their own modules on this metadata; importing them here
# keeps "schema.metadata" complete for the migrated-database comparison.
import authz.store.audit_schema  # noqa: E402
import authz.store.migration_schema  # noqa: E402,F401
