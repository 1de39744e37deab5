"""What a caller asks and what the engine answers: transport-free value types.

The gRPC layer maps these to and from `authz.v1` messages; the policy test runner and
the CLI use them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why a decision came out as it did; stable codes callers may branch on."""

    GRANTED = "granted"
    LEGACY_MODE = "legacy_mode"
    USER_UNKNOWN = "user_unknown"
    CRM_USER_DISABLED = "crm_user_disabled"
    FINANCE_USER_INACTIVE = "finance_user_inactive"
    NOT_MIGRATED = "not_migrated"
    PRODUCT_NOT_CONNECTED = "product_not_connected"
    ACTION_NOT_GRANTED = "action_not_granted"
    NO_DIRECT_ACCESS = "no_direct_access"
    OUT_OF_SCOPE = "out_of_scope"
    LOCATION_NOT_ALLOWED = "location_not_allowed"
    BLOCKED_UNTIL_APPROVED = "blocked_until_approved"
    APPROVED_RECORD_LOCKED = "approved_record_locked"
    NOT_PENDING_APPROVAL = "not_pending_approval"
    NOT_APPROVER = "not_approver"
    SELF_APPROVAL = "self_approval"
    FIELD_NOT_WRITABLE = "field_not_writable"


class IdentityKind(StrEnum):
    """Who the CRM user acts as in the finance suite."""

    NONE = "none"
    FINANCE_USER = "finance_user"  # licensed Books and/or Subscriptions user
    INTEGRATION_USER = "integration_user"
    INTEGRATION_OWNER = "integration_owner"  # legacy mode only


class Mode(StrEnum):
    """Legacy: everything runs as the integration owner. Unified: each user as themself."""

    LEGACY = "legacy"
    UNIFIED = "unified"


class Channel(StrEnum):
    """Where the action is taken: inside the CRM, or directly in the finance product."""

    CRM = "crm"
    DIRECT = "direct"


class ApprovalOutcome(StrEnum):
    """What saving the record will lead to."""

    PENDING_APPROVAL = "pending_approval"
    AUTO_APPROVED = "auto_approved"
    AUTO_REJECTED = "auto_rejected"


@dataclass(slots=True)
class Record:
    """Attributes of the record acted on; all optional, checked when a rule needs them.

    Treat it as immutable; not declared frozen for the reason given on `Decision`
    (one is built per request, per CheckBatch item).
    """

    record_id: str = ""
    customer_id: str = ""
    owner: str = ""  # CRM user id of the customer's contact owner (assigned-customers scope)
    total: float | None = None
    currency: str = ""
    status: str = ""
    approval_level: int = 0  # current approval level, 1-based; 0 when unknown
    created_by: str = ""  # CRM user id of the creator
    location: str = ""


@dataclass(slots=True)
class CheckRequest:
    """One question: may this CRM user take this action on this module (and record)?

    Treat it as immutable; not declared frozen for the reason given on `Decision`
    (one is built per request, per CheckBatch item).
    """

    org_id: str
    user: str  # CRM user id or e-mail
    action: str
    module: str
    product: str = ""  # empty: any connected product that has the module
    record: Record = field(default_factory=Record)
    read_fields: tuple[str, ...] = ()
    write_fields: tuple[str, ...] = ()
    channel: Channel = Channel.CRM
    explain: bool = False
    min_revision: int = 0


@dataclass(frozen=True, slots=True)
class Identity:
    """The finance identity a CRM user acts as."""

    kind: IdentityKind
    crm_user_id: str = ""
    email: str = ""
    display_name: str = ""
    books_user_id: str = ""
    subscriptions_user_id: str = ""
    integration_user_id: str = ""
    roles: tuple[str, ...] = ()  # qualified role ids, e.g. "books:staff"


NO_IDENTITY = Identity(kind=IdentityKind.NONE)


@dataclass(frozen=True, slots=True)
class ApprovalObligation:
    """Saving this record starts (or settles) an approval."""

    outcome: ApprovalOutcome
    rule: str = ""  # the approval rule (flow) that applies
    level: int = 0  # the level the record waits at (1-based)
    levels: int = 0  # how many levels the flow has
    approver_roles: tuple[str, ...] = ()
    approver_users: tuple[str, ...] = ()  # e-mail addresses


@dataclass(slots=True)
class Decision:
    """The answer, with everything a caller needs to act on it and an auditor to trace it.

    Treat it as immutable. It is not declared frozen because one is built per request and
    a frozen dataclass sets each of its 15 fields through `object.__setattr__`: 5× the
    cost of a plain one, a fifth of a whole decision (bench/core.py).
    """

    allowed: bool
    reason: Reason
    message: str
    mode: Mode
    identity: Identity
    org_id: str
    policy_revision: str
    directory_revision: int
    product: str = ""
    hidden_fields: tuple[str, ...] = ()
    read_only_fields: tuple[str, ...] = ()
    approval: ApprovalObligation | None = None
    blocked_until_approved: bool = False
    matched_rules: tuple[str, ...] = ()  # Casbin policy lines, with explain
    decision_id: str = ""
