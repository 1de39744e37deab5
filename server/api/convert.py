"""Mapping between authz.v1 messages and the domain's value types.

Kept apart from the servicer so that the mapping is testable without a server, and so
that every proto input is validated here (unknown enum values, non-finite totals,
malformed directory users) before the domain sees it: a caller's mistake must come
back as INVALID_ARGUMENT naming the field, never as INTERNAL.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from google.protobuf import any_pb2, unknown_fields
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2, status_pb2

from authz import catalog
from authz.decision import (
    ApprovalOutcome,
    Channel,
    CheckRequest,
    Decision,
    Identity,
    IdentityKind,
    Mode,
    Reason,
    Record,
)
from authz.directory import CrmUser, FinanceUser, IntegrationUser, email_key
from authz.directory_check import Violation
from authz.errors import (
    AuthzError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PolicyUnavailable,
    UnknownOrganization,
)
from authz.v1 import authz_pb2 as pb

MAX_TEXT = 256
ERROR_DOMAIN = "authz.v1"  # google.rpc.ErrorInfo.domain of every reason this server sets

_CHANNELS = {
    pb.CHANNEL_UNSPECIFIED: Channel.CRM,
    pb.CHANNEL_CRM: Channel.CRM,
    pb.CHANNEL_DIRECT: Channel.DIRECT,
}
# Enum values are named after the domain's, so the mapping is derived, not hand-kept:
# a domain value without a proto counterpart fails at import, not in production.
_REASONS: dict[Reason, pb.Reason.ValueType] = {
    r: pb.Reason.Value("REASON_" + r.name) for r in Reason
}
_MODES: dict[Mode, pb.Mode.ValueType] = {m: pb.Mode.Value("MODE_" + m.name) for m in Mode}
_KINDS: dict[IdentityKind, pb.IdentityKind.ValueType] = {
    k: pb.IdentityKind.Value("IDENTITY_KIND_" + k.name) for k in IdentityKind
}
_OUTCOMES: dict[ApprovalOutcome, pb.ApprovalOutcome.ValueType] = {
    o: pb.ApprovalOutcome.Value("APPROVAL_OUTCOME_" + o.name) for o in ApprovalOutcome
}


def _text(value: str, field: str, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument(field, "required")
    if len(value) > MAX_TEXT:
        raise InvalidArgument(field, f"longer than {MAX_TEXT} characters")
    return value


_RECORD_TEXT = ("record_id", "customer_id", "owner", "currency", "status", "created_by",
                "location")


def check_request(msg: pb.CheckRequest) -> CheckRequest:
    """A proto CheckRequest as the domain's, rejecting what proto cannot rule out."""
    channel = _CHANNELS.get(msg.channel)
    if channel is None:
        raise InvalidArgument("channel", f"unknown channel value {msg.channel}")
    rec = msg.record
    total: float | None = None
    if rec.HasField("total"):
        total = rec.total.value
        if not math.isfinite(total):
            raise InvalidArgument("record.total", "must be a finite number")
    record = Record(rec.record_id, rec.customer_id, rec.owner, total, rec.currency, rec.status,
                    rec.approval_level, rec.created_by, rec.location)
    if max(len(record.record_id), len(record.customer_id), len(record.owner),
           len(record.currency), len(record.status), len(record.created_by),
           len(record.location)) > MAX_TEXT:  # one test per request; name the field if so
        for name in _RECORD_TEXT:
            _text(getattr(rec, name), f"record.{name}")
    org_id, user, action, module, product = msg.org_id, msg.user, msg.action, msg.module, msg.product
    # One test for the five texts (the usual case); field by field, in order, to name one.
    if (max(len(org_id), len(user), len(action), len(module), len(product)) > MAX_TEXT
            or not (org_id.strip() and user.strip() and action.strip() and module.strip())):
        _text(org_id, "org_id", required=True)
        _text(user, "user", required=True)
        _text(action, "action", required=True)
        _text(module, "module", required=True)
        _text(product, "product")
    return CheckRequest(
        org_id=org_id,
        user=user,
        action=action,
        module=module,
        product=product,
        record=record,
        # tuple() of an empty repeated field costs ~0.5 us: most requests name no fields
        read_fields=tuple(read) if (read := msg.read_fields) else (),
        write_fields=tuple(write) if (write := msg.write_fields) else (),
        channel=channel,
        explain=msg.explain,
        min_revision=_min_revision(msg.min_revision),
    )


def _min_revision(value: int) -> int:
    if value < 0:
        raise InvalidArgument("min_revision", "must not be negative")
    return value


def now_stamp() -> Timestamp:
    """The current time as a Timestamp (a fifth of `FromDatetime(datetime.now(UTC))`)."""
    t = time.time_ns()
    return Timestamp(seconds=t // 1_000_000_000, nanos=t % 1_000_000_000)


def _from_datetime(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _identity(ident: Identity) -> pb.Identity:
    return pb.Identity(
        kind=_KINDS[ident.kind],
        crm_user_id=ident.crm_user_id,
        email=ident.email,
        display_name=ident.display_name,
        books_user_id=ident.books_user_id,
        subscriptions_user_id=ident.subscriptions_user_id,
        integration_user_id=ident.integration_user_id,
        roles=ident.roles,
    )


#: id(Identity) -> (the Identity, its message): a snapshot's identities answer many calls,
#: so each message is built once (the Identity is kept, so its id stays its own).
_IDENTITY_PB: dict[int, tuple[Identity, pb.Identity]] = {}
_IDENTITY_PB_MAX = 4096  # then cleared: snapshots are replaced, their identities with them


def reason_number(reason: Reason) -> int:
    """The wire value of a decision's reason."""
    return int(_REASONS[reason])


def check_response(d: Decision, decided_at: datetime | None = None,
                   stamp: Timestamp | None = None,
                   identities: dict[int, tuple[Identity, pb.Identity]] | None = None,
                   out: pb.CheckResponse | None = None) -> pb.CheckResponse:
    """A domain Decision as a proto CheckResponse. `stamp`, when given, is used as
    decided_at as is (CheckBatch stamps its items once, not a clock read each).
    `identities` (CheckBatch) keeps each Identity's message, built once per batch: the
    items of a batch share few identities (the same snapshot's objects). `out`, when
    given, is filled in place (a CheckBatch result's own message: no copy into it).
    Fields are set one by one, repeated ones only when not empty: an empty list passed
    to the constructor costs ~0.5 us each."""
    if stamp is None:
        stamp = now_stamp() if decided_at is None else _from_datetime(decided_at)
    ident = d.identity
    if identities is None:  # a single answer: the process-wide cache, bounded
        identities = _IDENTITY_PB
        if len(identities) >= _IDENTITY_PB_MAX:
            identities.clear()
    # Keyed by id(); the Identity is kept beside its message so the id stays its own.
    known = identities.get(id(ident))
    if known is None or known[0] is not ident:
        known = identities[id(ident)] = (ident, _identity(ident))
    ident_pb = known[1]
    if out is None:
        out = pb.CheckResponse()
    out.decision = pb.DECISION_ALLOW if d.allowed else pb.DECISION_DENY
    out.reason = _REASONS[d.reason]
    out.message = d.message
    out.mode = _MODES[d.mode]
    out.identity.CopyFrom(ident_pb)
    if d.hidden_fields:
        out.hidden_fields.extend(d.hidden_fields)
    if d.read_only_fields:
        out.read_only_fields.extend(d.read_only_fields)
    out.blocked_until_approved = d.blocked_until_approved
    out.policy_revision = d.policy_revision
    out.directory_revision = d.directory_revision
    out.decision_id = d.decision_id
    out.product = d.product
    if d.matched_rules:
        out.matched_rules.extend(d.matched_rules)
    out.decided_at.CopyFrom(stamp)
    out.org_id = d.org_id
    if d.approval is not None:
        a = d.approval
        out.approval.CopyFrom(pb.ApprovalObligation(
            outcome=_OUTCOMES[a.outcome], rule=a.rule, level=a.level, levels=a.levels,
            approver_roles=a.approver_roles, approver_users=a.approver_users,
        ))
    return out


# --- errors -------------------------------------------------------------------------

def error_status(exc: AuthzError) -> status_pb2.Status:
    """The google.rpc.Status a domain error maps to, with details a client can act on."""
    if isinstance(exc, PolicyUnavailable):  # the file and problem are for the log only
        info = error_details_pb2.ErrorInfo(reason="POLICY_UNVERIFIED", domain=ERROR_DOMAIN,
                                           metadata={"org_id": exc.org_id})
        return _status(code_pb2.UNAVAILABLE, exc.public, info)
    if isinstance(exc, InvalidArgument):
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in ((exc.field, exc.description), *exc.more)
        ])
        return _status(code_pb2.INVALID_ARGUMENT, str(exc), bad)
    if isinstance(exc, UnknownOrganization):
        info = error_details_pb2.ResourceInfo(resource_type="organization",
                                              resource_name=exc.org_id, description=str(exc))
        return _status(code_pb2.NOT_FOUND, str(exc), info)
    if isinstance(exc, NotFound):
        return _status(code_pb2.NOT_FOUND, str(exc))
    if isinstance(exc, PermissionDenied):
        return _status(code_pb2.PERMISSION_DENIED, str(exc))
    if isinstance(exc, FailedPrecondition):
        failure = error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(type="REVISION", description=str(exc))
        ])
        return _status(code_pb2.FAILED_PRECONDITION, str(exc), failure)
    # Any other AuthzError is still about the request, never a server fault.
    return _status(code_pb2.INVALID_ARGUMENT, str(exc))


def _status(code: int, message: str, *details: object) -> status_pb2.Status:
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)  # type: ignore[arg-type]
        packed.append(a)
    return status_pb2.Status(code=code, message=message, details=packed)


# --- directory import ---------------------------------------------------------------

def _email(value: str, field: str, required: bool) -> str:
    _text(value, field, required)
    if value and ("@" not in value or value.strip() != value or " " in value):
        raise InvalidArgument(field, f"invalid e-mail address '{value}'")
    return value


_CRM_STATUS: dict[int, Literal["active", "disabled"]] = {
    pb.CRM_USER_STATUS_UNSPECIFIED: "active",
    pb.CRM_USER_STATUS_ACTIVE: "active",
    pb.CRM_USER_STATUS_DISABLED: "disabled",
}
_FIN_STATUS: dict[int, Literal["active", "inactive"]] = {
    pb.FINANCE_USER_STATUS_UNSPECIFIED: "active",
    pb.FINANCE_USER_STATUS_ACTIVE: "active",
    pb.FINANCE_USER_STATUS_INACTIVE: "inactive",
}


def directory_policy_errors(violations: Sequence[Violation]) -> InvalidArgument:
    """Policy violations of an ImportDirectoryRequest as one error naming every field."""
    named = [(v.path({"role": "role_id"}), v.describe()) for v in violations]
    return InvalidArgument(named[0][0], named[0][1], tuple(named[1:]))


def directory(msg: pb.ImportDirectoryRequest) -> tuple[
        str, list[CrmUser], list[FinanceUser], list[IntegrationUser]]:
    """The users of an ImportDirectoryRequest, validated like a directory file."""
    _no_unknown_fields(msg, "")
    org_id = _text(msg.org_id, "org_id", required=True)
    crm: dict[str, CrmUser] = {}
    for i, u in enumerate(msg.crm_users):
        at = f"crm_users[{i}]"
        uid = _text(u.id, f"{at}.id", required=True)
        if uid in crm:
            raise InvalidArgument(f"{at}.id", f"duplicate CRM user '{uid}'")
        if u.status not in _CRM_STATUS:
            raise InvalidArgument(f"{at}.status", f"unknown status value {u.status}")
        crm[uid] = CrmUser(uid, _email(u.email, f"{at}.email", False),
                           _text(u.name, f"{at}.name") or uid, _CRM_STATUS[u.status], u.is_admin)
    finance: list[FinanceUser] = []
    for key, product, users in (("books_users", catalog.BOOKS, msg.books_users),
                                ("subscriptions_users", catalog.SUBSCRIPTIONS,
                                 msg.subscriptions_users)):
        finance.extend(_finance_users(key, product, users))
    finance_emails = {email_key(f.email) for f in finance}
    integ: list[IntegrationUser] = []
    for i, iu in enumerate(msg.integration_users):
        at = f"integration_users[{i}]"
        crm_id = _text(iu.crm_user_id, f"{at}.crm_user_id", required=True)
        if crm_id not in crm:
            raise InvalidArgument(f"{at}.crm_user_id", f"unknown CRM user '{crm_id}'")
        if crm[crm_id].email and email_key(crm[crm_id].email) in finance_emails:
            raise InvalidArgument(f"{at}.crm_user_id",
                                  f"'{crm_id}' is a finance user and cannot be an integration user")
        integ.append(IntegrationUser(
            crm_id, _text(iu.integration_user_id, f"{at}.integration_user_id", required=True)))
    return org_id, list(crm.values()), finance, integ


def _no_unknown_fields(msg: Message, at: str) -> None:
    """Fields this server does not know (a newer client's, or a typo'd JSON transcoding) are
    refused rather than dropped: a directory must never import as less than was sent."""
    found = unknown_fields.UnknownFieldSet(msg)
    if len(found):
        raise InvalidArgument(at or type(msg).__name__, f"unknown field number "
                              f"{found[0].field_number} in {type(msg).__name__}; nothing imported")
    for name in ("crm_users", "books_users", "subscriptions_users", "integration_users"):
        for i, item in enumerate(getattr(msg, name, ())):
            _no_unknown_fields(item, f"{name}[{i}]")


def _finance_users(key: str, product: str, users: Sequence[pb.FinanceUser]) -> list[FinanceUser]:
    seen: set[str] = set()
    out: list[FinanceUser] = []
    for i, u in enumerate(users):
        at = f"{key}[{i}]"
        email = _email(u.email, f"{at}.email", True)
        if email_key(email) in seen:
            raise InvalidArgument(f"{at}.email", f"two {product} users share e-mail {email}")
        seen.add(email_key(email))
        if u.status not in _FIN_STATUS:
            raise InvalidArgument(f"{at}.status", f"unknown status value {u.status}")
        out.append(FinanceUser(
            product, _text(u.user_id, f"{at}.user_id", required=True), email,
            _text(u.name, f"{at}.name") or email, _text(u.role_id, f"{at}.role_id", required=True),
            _FIN_STATUS[u.status],
            tuple(_text(loc, f"{at}.locations[{j}]", True) for j, loc in enumerate(u.locations)),
            frozenset(_text(c, f"{at}.assigned_customers[{j}]", True)
                      for j, c in enumerate(u.assigned_customers)),
        ))
    return out
