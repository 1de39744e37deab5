"""Tables of the audit trail: the entries, and one head row per organization.

Same metadata as authz.store.schema (imported at its end), created by Alembic revision
0003_audit (the quarantine by 0006_audit_quarantine). Entries are append-only; the head
row records the newest (seq, hash) so that
removing the newest entries is detected, and the retention checkpoint (the last trimmed
entry's seq and hash) so that a trimmed chain still verifies from its first kept entry.
"""

from __future__ import annotations

import sqlalchemy as sa

from authz.store.metadata import metadata

# `at` is ISO 8601 UTC text in one fixed width (2025-06-01T12:00:00.000000Z): it is part
# of the hashed content, so it must read back byte for byte, and fixed width makes text
# order time order for range queries and retention.
audit_entries = sa.Table(
    "audit_entries",
    metadata,
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
    sa.Index("ix_audit_entries_user", "org_id", "crm_user", "seq"),
    sa.Index("ix_audit_entries_record", "org_id", "record_id", "seq"),
    sa.Index("ix_audit_entries_at", "org_id", "at"),
    sa.Index("ix_audit_entries_decision", "decision_id"),
)

audit_heads = sa.Table(
    "audit_heads",
    metadata,
    sa.Column("org_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),  # newest entry; 0: none yet
    sa.Column("hash", sa.String(64), nullable=False),
    # Retention: entries up to checkpoint_seq were trimmed; checkpoint_hash is the hash of
    # the last of them, which the first kept entry links to.
    sa.Column("checkpoint_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("checkpoint_hash", sa.String(64), nullable=False),
    sa.Column("trimmed_at", sa.DateTime(timezone=True), nullable=True),
    # Entries a full batched queue dropped under the "drop" policy: loss is never silent.
    sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
)

# Entries the store refused while the rest of their batch was written (a poisoned entry:
# say text PostgreSQL cannot hold). Kept apart, never silently lost: `entry` is the
# entry's JSON with every non-ASCII and control character escaped (so it can always be
# stored), `org_id`/`decision_id` the same escaping cut to the column, `reason` a stable
# class a client may see, `detail` the store's own text for operators only.
audit_quarantine = sa.Table(
    "audit_quarantine",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("org_id", sa.String(128), nullable=False),
    sa.Column("decision_id", sa.String(64), nullable=False),
    sa.Column("quarantined_at", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("entry", sa.Text, nullable=False),
    sa.Index("ix_audit_quarantine_org", "org_id", "id"),
)
