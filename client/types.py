"""Typed values of the client SDK: what a caller asks and what it gets back.

Plain dataclasses with string enums ("allow", "granted", "finance_user") so that calling
services depend on neither the generated stubs' types nor the server's domain code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .v1 import authz_pb2 as pb

Channel = Literal["crm", "direct"]

#: Reason of the deny the client makes up itself when no server answered in time.
SERVER_UNAVAILABLE = "server_unavailable"


@dataclass(frozen=True, slots=True)
class Record:
    """Attributes of the record acted on; all optional."""

    record_id: str = ""
    customer_id: str = ""
    owner: str = ""
    total: float | None = None
    currency: str = ""
    status: str = ""
    approval_level: int = 0
    created_by: str = ""
    location: str = ""


@dataclass(frozen=True, slots=True)
class CheckQuery:
    """One Check question (the arguments of `check`, as a value for `check_batch`)."""

    org_id: str
    user: str
    action: str
    module: str
    product: str = ""
    record: Record = field(default_factory=Record)
    read_fields: tuple[str, ...] = ()
    write_fields: tuple[str, ...] = ()
    channel: Channel = "crm"
    explain: bool = False
    min_revision: int = 0

    def to_proto(self) -> pb.CheckRequest:
        r = self.record
        msg = pb.CheckRequest(
            org_id=self.org_id, user=self.user, action=self.action, module=self.module,
            product=self.product, read_fields=self.read_fields, write_fields=self.write_fields,
            channel=pb.CHANNEL_DIRECT if self.channel == "direct" else pb.CHANNEL_CRM,
            explain=self.explain, min_revision=self.min_revision,
            record=pb.Record(record_id=r.record_id, customer_id=r.customer_id, owner=r.owner,
                             currency=r.currency, status=r.status,
                             approval_level=r.approval_level, created_by=r.created_by,
                             location=r.location),
        )
        if r.total is not None:
            msg.record.total.value = r.total
        return msg


@dataclass(frozen=True, slots=True)
class Identity:
    """Who to act as in the finance suite."""

    kind: str  # none, finance_user, integration_user, integration_owner
    crm_user_id: str = ""
    email: str = ""
    display_name: str = ""
    books_user_id: str = ""
    subscriptions_user_id: str = ""
    integration_user_id: str = ""
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Approval:
    """Saving the record starts (or settles) an approval."""

    outcome: str  # pending_approval, auto_approved, auto_rejected
    rule: str = ""
    level: int = 0
    levels: int = 0
    approver_roles: tuple[str, ...] = ()
    approver_users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A decision. `allowed` is the only field a caller must look at."""

    allowed: bool
    reason: str  # e.g. "granted", "action_not_granted", or SERVER_UNAVAILABLE
    message: str
    identity: Identity = field(default_factory=lambda: Identity(kind="none"))
    mode: str = ""
    hidden_fields: tuple[str, ...] = ()
    read_only_fields: tuple[str, ...] = ()
    approval: Approval | None = None
    blocked_until_approved: bool = False
    policy_revision: str = ""
    directory_revision: int = 0
    decision_id: str = ""  # empty when the client decided (server unavailable)
    product: str = ""
    matched_rules: tuple[str, ...] = ()
    decided_at: datetime | None = None
    org_id: str = ""

    @property
    def from_server(self) -> bool:
        """False when the client made this decision up because no server answered."""
        return bool(self.decision_id)

    @classmethod
    def from_proto(cls, m: pb.CheckResponse) -> CheckResult:
        approval = None
        if m.HasField("approval"):
            a = m.approval
            approval = Approval(
                outcome=_enum(pb.ApprovalOutcome.Name(a.outcome), "APPROVAL_OUTCOME_"),
                rule=a.rule, level=a.level, levels=a.levels,
                approver_roles=tuple(a.approver_roles), approver_users=tuple(a.approver_users))
        return cls(
            allowed=m.decision == pb.DECISION_ALLOW,
            reason=_enum(pb.Reason.Name(m.reason), "REASON_"),
            message=m.message,
            identity=identity_of(m.identity),
            mode=_enum(pb.Mode.Name(m.mode), "MODE_"),
            hidden_fields=tuple(m.hidden_fields),
            read_only_fields=tuple(m.read_only_fields),
            approval=approval,
            blocked_until_approved=m.blocked_until_approved,
            policy_revision=m.policy_revision,
            directory_revision=m.directory_revision,
            decision_id=m.decision_id,
            product=m.product,
            matched_rules=tuple(m.matched_rules),
            decided_at=m.decided_at.ToDatetime() if m.HasField("decided_at") else None,
            org_id=m.org_id,
        )


def enum_name(name: str, prefix: str) -> str:
    """"REASON_ACTION_NOT_GRANTED" -> "action_not_granted"."""
    return name.removeprefix(prefix).lower()


_enum = enum_name


def identity_of(i: pb.Identity) -> Identity:
    return Identity(kind=_enum(pb.IdentityKind.Name(i.kind), "IDENTITY_KIND_"),
                    crm_user_id=i.crm_user_id, email=i.email, display_name=i.display_name,
                    books_user_id=i.books_user_id, subscriptions_user_id=i.subscriptions_user_id,
                    integration_user_id=i.integration_user_id, roles=tuple(i.roles))


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A request field the server rejected, e.g. ("module", "unknown module 'x'")."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class CheckError:
    """One CheckBatch item the server could not decide (the rest are unaffected)."""

    code: str  # gRPC status code name, e.g. "INVALID_ARGUMENT"
    message: str
    violations: tuple[FieldViolation, ...] = ()

    allowed = False  # so that `result.allowed` is safe on every batch item
