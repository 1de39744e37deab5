"""What the trail records for a decision and for an attribution (unsealed entries).

Built on the decision path, so kept to plain field copies: hashing and numbering happen
later, in the store, under the organization's head lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from authz.attribution import Attribution, Operation
from authz.audit.chain import AuditEntry
from authz.decision import CheckRequest, Decision, IdentityKind, Mode, Reason

_second: tuple[int, str] = (-1, "")  # the last second stamped, and its text


def now_stamp() -> str:
    """Fixed-width ISO 8601 UTC (as authz.store.audit_query.stamp writes it): hashed as text, so it
    must round-trip exactly. From time.time() because it runs on every decision, and is
    about twice as fast as datetime.strftime; the text of the second is formatted once a
    second (a tuple swap: safe across threads)."""
    global _second
    t = time.time()
    sec = int(t)
    second = _second
    if second[0] != sec:
        second = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{second[1]}.{int(t % 1 * 1e6):06d}Z"


def acting_id(d: Decision) -> str:
    """Whom the action is done as: the user's identity in the product the decision was made
    in (their Subscriptions user for Subscriptions), an integration user, or (legacy) the
    owner."""
    i = d.identity
    if i.kind == IdentityKind.INTEGRATION_OWNER:
        return i.crm_user_id
    if d.product == "subscriptions" and i.subscriptions_user_id:
        return i.subscriptions_user_id
    return i.books_user_id or i.subscriptions_user_id or i.integration_user_id


def acting_kind(kind: str, product: str) -> str:
    """The identity kind acted as, with the product acted in: "finance_user:subscriptions"
    (the trail records the product without a column of its own: chains stay verifiable)."""
    return f"{kind}:{product}" if product else kind


def product_of(kind: str) -> str:
    """The product an entry's acting_kind names ("" when none)."""
    return kind.partition(":")[2]


#: Enum members as plain text: `.value` is a property call, on every decision recorded.
_TEXT: dict[object, str] = {m: m.value for e in (IdentityKind, Reason, Mode) for m in e}


def check_entry(req: CheckRequest, d: Decision, crm_user: str, caller: str) -> AuditEntry:
    """The entry for one Check decision. `crm_user` is the requesting CRM user's id (the
    request's text when no such user exists): in legacy mode the decision's identity is
    the integration owner, and the trail must still say who asked."""
    return AuditEntry(
        org_id=d.org_id, seq=0, kind="check", at=now_stamp(), decision_id=d.decision_id,
        crm_user=crm_user, acting_kind=acting_kind(_TEXT[d.identity.kind], d.product),
        acting_id=acting_id(d),
        action=req.action, module=req.module, record_id=req.record.record_id, allowed=d.allowed,
        reason=_TEXT[d.reason], mode=_TEXT[d.mode], policy_revision=d.policy_revision,
        directory_revision=d.directory_revision, caller=caller,
    )


def check_rows(decided: Iterable[tuple[CheckRequest, Decision, str]], caller: str
               ) -> list[list[object]]:
    """The entries of a batch of Check decisions, (request, decision, requesting CRM user)
    each, as the local log's rows (authz.audit.segment.row; what `check_entry` holds,
    without an AuditEntry object each). One time for the batch, as its answers carry one
    decided_at; each identity's columns worked out once (a batch's items share a few)."""
    at = now_stamp()
    acting: dict[tuple[int, str], tuple[str, str]] = {}  # (id(identity), product) -> kind, id
    rows: list[list[object]] = []
    add = rows.append
    for req, d, crm_user in decided:
        key = (id(d.identity), d.product)  # the decisions keep their identities alive
        cols = acting.get(key)
        if cols is None:
            cols = acting[key] = (acting_kind(d.identity.kind.value, d.product), acting_id(d))
        add([d.org_id, "check", at, d.decision_id, crm_user, cols[0], cols[1], req.action,
             req.module, req.record.record_id, d.allowed, d.reason._value_, d.mode._value_,
             d.policy_revision, d.directory_revision, caller])
    return rows


def attribution_entry(org_id: str, crm_user: str, op: Operation, a: Attribution,
                      caller: str) -> AuditEntry:
    """The entry for an attribution: the action is about to be done as `a.act_as`.

    `decision_id` holds the attribution id; the cited Check decision, when there is one,
    goes in `reason` ("cites <id>"), so each id in the trail names one entry.
    """
    return AuditEntry(
        org_id=org_id, seq=0, kind="attribute", at=now_stamp(), decision_id=a.attribution_id,
        crm_user=crm_user, acting_kind=acting_kind(a.identity.kind.value, a.product),
        acting_id=a.act_as,
        action=op.action, module=op.module, record_id=op.record_id, allowed=True,
        reason=f"cites {a.decision_id}" if a.decision_id else "no decision cited",
        mode=a.mode.value, policy_revision=a.policy_revision,
        directory_revision=a.directory_revision, caller=caller,
    )
