"""The decision rules of DOMAIN.md §4, in order, over a policy view.

`decide` takes the organization's index (settings, approval flows) and a view that
answers the Casbin questions: grants, field access, approvers, blocked actions. The
index is its own fast view; `authz.engine.reference` is a view that asks Casbin's
`enforce`, so the same rules run over both and differential tests compare them.
"""

from __future__ import annotations

import hashlib
import itertools
import os

from authz import catalog
from authz.decision import (
    NO_IDENTITY,
    ApprovalObligation,
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
from authz.directory import CrmUser, DirectorySnapshot
from authz.engine.approvers import PolicyView, _uid, _user_email, _user_label, approves, is_named
from authz.engine.explain import sources as explain_sources
from authz.engine.identity import resolve_cached
from authz.engine.identity import role_label as _role_list
from authz.engine.index import FlowInfo, ModuleApprovalInfo, OrgIndex
from authz.engine.mode import legacy_reason
from authz.engine.validate import _PRODUCTS_WITH, validate
from authz.errors import InvalidArgument
from authz.policy.compiler import approver_key

#: Channel values as plain text (an enum's `.value` is a property call on the hot path).
_CHANNEL_TEXT = {c: c.value for c in Channel}


def _new_id() -> str:
    """An unguessable id: a keyed BLAKE2b (a PRF) of a per-process counter, under a 256-bit
    key from the OS CSPRNG. Attribute cites decision ids as proof a decision was made, so
    they must not be guessable; without the key, outputs are indistinguishable from random.
    Not `os.urandom` per call: getrandom releases the GIL, and on a busy server (the
    audit writer thread) each release can cost a 5 ms switch interval to get it back."""
    return _blake2b(next(_counter).to_bytes(8, "little"), key=_key, digest_size=16).hexdigest()


def _rekey() -> None:
    """A fresh key in a forked child, so that processes never share an id sequence."""
    global _key, _counter
    _key = os.urandom(32)
    _counter = itertools.count()


_blake2b = hashlib.blake2b
_key = os.urandom(32)
_counter = itertools.count()
os.register_at_fork(after_in_child=_rekey)


class _Ctx:
    """What a decision has established so far; builds the Decision."""

    __slots__ = ("granted_by", "identity", "org", "product", "req", "rules", "snap")

    def __init__(self, req: CheckRequest, org: OrgIndex, snap: DirectorySnapshot) -> None:
        self.req = req
        self.org = org
        self.snap = snap
        self.identity: Identity = NO_IDENTITY
        self.product = ""
        self.rules: list[str] = []
        self.granted_by = ""  # what allowed it, when not a plain role grant (approvals)

    def done(self, allowed: bool, reason: Reason, message: str, **extra: object) -> Decision:
        d = self._decision(allowed, reason, message, **extra)
        if self.req.explain and self.org.sources:  # the YAML behind it, granted or refused
            d.matched_rules = (*d.matched_rules, *explain_sources(self.req, d, self.org))
        return d

    def _decision(self, allowed: bool, reason: Reason, message: str, **extra: object
                  ) -> Decision:
        return Decision(
            allowed=allowed,
            reason=reason,
            message=message,
            mode=Mode.UNIFIED,
            identity=self.identity,
            org_id=self.org.org_id,
            policy_revision=self.org.revision,
            directory_revision=self.snap.revision,
            product=self.product,
            matched_rules=tuple(self.rules) if self.req.explain else (),
            decision_id=_new_id(),
            **extra,  # type: ignore[arg-type]
        )

    def deny(self, reason: Reason, message: str, **extra: object) -> Decision:
        return self.done(False, reason, message, **extra)


def _legacy(req: CheckRequest, org: OrgIndex, snap: DirectorySnapshot, why: str) -> Decision:
    d = _legacy_decision(req, org, snap, why)
    if req.explain and org.sources:  # the organization's settings (and the release) decided
        d.matched_rules = explain_sources(req, d, org)
    return d


def _legacy_decision(req: CheckRequest, org: OrgIndex, snap: DirectorySnapshot, why: str
                     ) -> Decision:
    return Decision(
        allowed=True,
        reason=Reason.LEGACY_MODE,
        message=f"legacy mode ({why}): the CRM acts as the integration owner",
        mode=Mode.LEGACY,
        identity=Identity(kind=IdentityKind.INTEGRATION_OWNER, crm_user_id=org.integration_owner),
        org_id=org.org_id,
        policy_revision=org.revision,
        directory_revision=snap.revision,
        decision_id=_new_id(),
    )


def decide(req: CheckRequest, org: OrgIndex, snap: DirectorySnapshot,
           view: PolicyView | None = None) -> Decision:
    """Decide one request. `view` defaults to the index itself."""
    validate(req)
    return decide_valid(req, org, snap, view)


def decide_valid(req: CheckRequest, org: OrgIndex, snap: DirectorySnapshot,
                 view: PolicyView | None = None) -> Decision:
    """`decide` for a request `validate` has accepted already (the engine validates
    before it looks the organization up, and a request is validated once)."""
    if org.effective_mode != "unified" or (snap.mode is not None and not snap.mode.unified):
        return _legacy(req, org, snap, legacy_reason(org, snap) or org.mode_reason)
    v: PolicyView = view if view is not None else org
    ctx = _Ctx(req, org, snap)
    module, action = req.module, req.action
    key = (org.products, req.product, module)
    products = _CONNECTED.get(key)
    if products is None:
        products = _CONNECTED[key] = _connected(org.products, req.product, module)
    if not products:
        candidates = (req.product,) if req.product else _PRODUCTS_WITH[module]
        return ctx.deny(Reason.PRODUCT_NOT_CONNECTED,
                        f"{module} belongs to {' or '.join(candidates)}, which is not connected "
                        f"to organization {org.org_id}")

    resolved = resolve_cached(org, snap, req.user)
    ctx.identity = resolved.identity
    if resolved.reason is not None or resolved.crm is None:
        return ctx.deny(resolved.reason or Reason.USER_UNKNOWN, resolved.message)
    crm, finance = resolved.crm, resolved.finance
    if ctx.identity.kind == IdentityKind.INTEGRATION_USER and req.channel == Channel.DIRECT:
        return ctx.deny(Reason.NO_DIRECT_ACCESS,
                        "integration users act only from the CRM, never directly in "
                        + " or ".join(products))
    roles = ctx.identity.roles
    rec = req.record
    # Record scope (DOMAIN §4.4): the record's owner is the user, or its customer is one of
    # the user's assigned customers (in any of their finance identities), whichever the
    # caller names.
    assigned = (bool(rec.owner) and rec.owner == crm.id) or (
        bool(rec.customer_id) and any(rec.customer_id in f.assigned_customers
                                      for f in finance.values()))
    channel = _CHANNEL_TEXT[req.channel]

    # Role grants: union across the connected products that have the module.
    approving = action in ("approve", "reject")
    if approving:
        product = _approval_product(org, products)
    else:
        product = ""
        for p in products:
            g = v.grant(roles, p, module, action, assigned, channel)
            if g is not None:
                product = p
                if req.explain:
                    ctx.rules.append(getattr(g, "line", str(g)))
                break
        if not product:
            if any(v.grant(roles, p, module, action, True, channel) is not None for p in products):
                return ctx.deny(Reason.OUT_OF_SCOPE,
                                f"{_role_list(org, roles)} may {action} {module} only for customers "
                                f"assigned to {crm.id}; " + _out_of_scope(rec))
            return ctx.deny(Reason.ACTION_NOT_GRANTED,
                            f"{_role_list(org, roles)} does not grant {action} on {module}")
    ctx.product = product

    # Only users limited to locations look their finance account up (one read fewer of
    # memory no other decision touched, for everyone else).
    fin = finance.get(product) if resolved.located else None
    if fin is not None and fin.locations and rec.location not in fin.locations:
        return ctx.deny(Reason.LOCATION_NOT_ALLOWED,
                        f"{crm.email} is limited to locations {', '.join(fin.locations)}; record "
                        + (f"is at {rec.location}" if rec.location else "location not given"))

    approval = org.approvals.get((product, module))
    approval_on = approval is not None and approval.type != "none"
    status = rec.status
    unapproved = status not in catalog.PAST_APPROVAL.get(module, catalog.APPROVED_ONLY)
    if approval is not None and approval_on:
        if action in approval.blocked and unapproved:
            return ctx.deny(Reason.BLOCKED_UNTIL_APPROVED,
                            f"{action} on {module} is blocked until the record is approved "
                            f"(status: {status or 'not given'})", blocked_until_approved=True)
        after = catalog.AFTER_APPROVAL.get(action)
        if after and not unapproved and v.grant(roles, product, module, after, assigned,
                                                channel) is None:
            return ctx.deny(Reason.APPROVED_RECORD_LOCKED,
                            f"the record is {status}; {action} needs the {after} permission")
        if action in catalog.APPROVAL_ACTIONS:
            email = crm.email if finance else ""
            denied = _check_approver(ctx, v, approval, crm, email, roles, product, assigned,
                                     channel)
            if denied is not None:
                return denied
    elif action in catalog.APPROVAL_ACTIONS:
        return ctx.deny(Reason.NOT_PENDING_APPROVAL, f"approval is not enabled on {module}")

    hidden, read_only = v.masks(roles, product, module)
    blocked_fields = [f for f in req.write_fields if f in hidden or f in read_only]
    if blocked_fields:
        return ctx.deny(Reason.FIELD_NOT_WRITABLE,
                        "cannot write " + ", ".join(
                            f"{f} ({'hidden' if f in hidden else 'read only'})"
                            for f in blocked_fields),
                        hidden_fields=hidden, read_only_fields=read_only)

    obligation = None
    if approval is not None and approval_on and action in catalog.WRITE_ACTIONS and unapproved:
        email = crm.email if finance else ""
        obligation = _obligation(ctx, v, _flow_for(ctx, approval, product), email, roles,
                                 product, assigned, channel)
    message = ctx.granted_by or f"{resolved.label} grants {action} on {product} {module}"
    if obligation is not None and obligation.outcome == ApprovalOutcome.PENDING_APPROVAL:
        message += f"; the record will wait for approval at level {obligation.level}"
    return ctx.done(True, Reason.GRANTED, message, hidden_fields=hidden,
                    read_only_fields=read_only, approval=obligation)


#: (connected products, requested product, module) -> the products a request may use:
#: a handful of combinations, computed once rather than filtered per request.
_CONNECTED: dict[tuple[tuple[str, ...], str, str], tuple[str, ...]] = {}


def _connected(connected: tuple[str, ...], product: str, module: str) -> tuple[str, ...]:
    candidates = (product,) if product else _PRODUCTS_WITH[module]
    return tuple(p for p in candidates if p in connected)


def _out_of_scope(rec: Record) -> str:
    """Why a record is outside the user's assigned customers, naming what the request lacks."""
    if not rec.customer_id and not rec.owner:
        return ("the request names neither the record's customer (record.customer_id) nor its "
                "owner (record.owner), so its scope cannot be decided")
    named = []
    if rec.customer_id:
        named.append(f"its customer {rec.customer_id} is not one of their assigned customers")
    if rec.owner:
        named.append(f"it is owned by {rec.owner}")
    return "this record: " + " and ".join(named)


def _approval_product(org: OrgIndex, products: tuple[str, ...]) -> str:
    for p in products:
        if p in org.products:
            return p
    return products[0]


def _flow_for(ctx: _Ctx, approval: ModuleApprovalInfo, product: str) -> FlowInfo | None:
    """The approval rule that applies to the record (first by priority whose criteria it
    meets). A rule whose criteria read an attribute the request does not carry is never
    skipped for lack of it: the question is refused, naming the attribute (DOMAIN §4.5)."""
    total = ctx.req.record.total
    for flow in approval.flows:
        if flow.has_criteria and total is None:
            raise InvalidArgument("record.total", f"required: approval rule {flow.id} of "
                                  f"{product} {ctx.req.module} reads the record's total")
        if flow.matches(total):
            return flow
    return None


def own_record(identity: Identity, crm: CrmUser, snap: DirectorySnapshot, created_by: str
               ) -> bool:
    """Whether `created_by` names this user by any identity (`own_identities`)."""
    return bool(created_by) and created_by.lower() in own_identities(identity, crm, snap)


def own_identities(identity: Identity, crm: CrmUser, snap: DirectorySnapshot) -> frozenset[str]:
    """Every name a record's creator may carry for this user, lower-cased: CRM user id,
    finance user ids (Books, Subscriptions, any product), integration user id, e-mail
    addresses. Compared without case (as SQL LOWER does, in ListFilter too): an id that
    differs only in case is taken as the user's own, which can only refuse more."""
    finance = snap.finance_users(crm).values()
    integ = snap.integration_users.get(crm.id)
    names = {crm.id, crm.email, identity.books_user_id, identity.subscriptions_user_id,
             identity.integration_user_id, integ.integration_user_id if integ else "",
             *(f.user_id for f in finance), *(f.email for f in finance)}
    return frozenset(n.lower() for n in names if n)


def _check_approver(ctx: _Ctx, v: PolicyView, approval: ModuleApprovalInfo, crm: CrmUser,
                    email: str,
                    roles: tuple[str, ...], product: str, assigned: bool, channel: str
                    ) -> Decision | None:
    """Approve / reject only as a named approver of the record's current level, or with a
    role that both approves that level and grants the action; final_approve with its grant
    (checked with the other grants). On success `ctx.granted_by` names what decided."""
    req, rec, module = ctx.req, ctx.req.record, ctx.req.module
    if rec.status != "pending_approval":
        return ctx.deny(Reason.NOT_PENDING_APPROVAL,
                        f"the record is {rec.status or 'of unknown status'}, not pending approval")
    if not ctx.org.allow_self_approval and own_record(ctx.identity, crm, ctx.snap,
                                                      rec.created_by):
        return ctx.deny(Reason.SELF_APPROVAL,
                        f"organization {ctx.org.org_id} does not let approvers {req.action} "
                        f"records they created (created by {rec.created_by}, one of "
                        f"{crm.id}'s identities)")
    if req.action == "final_approve":
        return None  # the role grant (admins) was checked with the other grants
    flow = _flow_for(ctx, approval, product)
    if flow is None or flow.outcome != "levels":
        return ctx.deny(Reason.NOT_APPROVER, f"no approval rule with levels applies to this "
                        f"{module} record")
    if not rec.approval_level and flow.levels > 1:
        raise InvalidArgument("record.approval_level", f"required: approval rule {flow.id} of "
                              f"{product} {module} has {flow.levels} levels; name the level "
                              "the record waits at")
    level = rec.approval_level or 1
    if level > flow.levels:
        return ctx.deny(Reason.NOT_APPROVER, f"approval rule {flow.id} has {flow.levels} "
                        f"level(s); the record is at level {level}")
    where = f"level {level} of approval rule {flow.id} ({product} {module})"
    uid = _uid(ctx.identity, product)
    if is_named(v, email, uid, product, module, flow.id, level):
        who = email if email and v.is_named_approver(email, product, module, flow.id, level) \
            else _user_label(ctx.snap, approver_key(product, uid))
        ctx.granted_by = f"{who} is a named approver of {where}"
    elif v.is_approver(roles, "", product, module, flow.id, level):
        grant = v.grant(roles, product, module, req.action, assigned, channel)
        if grant is None:
            scoped = v.grant(roles, product, module, req.action, True, channel) is not None
            return ctx.deny(Reason.OUT_OF_SCOPE if scoped else Reason.ACTION_NOT_GRANTED,
                            f"{_role_list(ctx.org, roles)} approves {where} but does not grant "
                            f"{req.action} on {module}"
                            + (" for this record's customer" if scoped else ""))
        ctx.granted_by = (f"{_role_list(ctx.org, roles)} grants {req.action} on {product} "
                          f"{module} and approves {where}")
        if req.explain:
            ctx.rules.append(getattr(grant, "line", str(grant)))
    else:
        r_, u_ = ctx.org.level_approvers(product, module, flow.id, level)
        return ctx.deny(Reason.NOT_APPROVER, f"{where} is approved by "
                        + ", ".join([*r_, *(_user_label(ctx.snap, u) for u in u_)]))
    ctx.product = product
    if req.explain:
        ctx.rules.append(f"p3, ..., {product}, {module}, {flow.id}, {level}")
    return None


def _obligation(ctx: _Ctx, v: PolicyView, flow: FlowInfo | None, email: str,
                roles: tuple[str, ...], product: str, assigned: bool, channel: str
                ) -> ApprovalObligation | None:
    module = ctx.req.module
    if flow is None:
        return None
    if flow.outcome == "auto_approve":
        return ApprovalObligation(ApprovalOutcome.AUTO_APPROVED, rule=flow.id)
    if flow.outcome == "auto_reject":
        return ApprovalObligation(ApprovalOutcome.AUTO_REJECTED, rule=flow.id)
    # The creator approves as far as they may: self-approval allowed, level by level,
    # or all the way when they may final-approve.
    level = 1
    if ctx.org.allow_self_approval:
        if v.grant(roles, product, module, "final_approve", assigned, channel) is not None:
            level = flow.levels + 1
        uid = _uid(ctx.identity, product)
        while level <= flow.levels and approves(v, roles, email, uid, product, module, flow.id,
                                                level):
            level += 1
    if level > flow.levels:
        return ApprovalObligation(ApprovalOutcome.AUTO_APPROVED, rule=flow.id,
                                  levels=flow.levels)
    approver_roles, approver_users = ctx.org.level_approvers(product, module, flow.id, level)
    return ApprovalObligation(ApprovalOutcome.PENDING_APPROVAL, rule=flow.id, level=level,
                              levels=flow.levels, approver_roles=approver_roles,
                              approver_users=tuple(_user_email(ctx.snap, u)
                                                   for u in approver_users))


