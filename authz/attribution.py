"""Attribution: whatever a CRM user does in the finance suite is done as that user
(DOMAIN.md §5): their own finance user or integration user, their name as creator,
their own address as sender. Never the integration owner for someone else.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Container
from dataclasses import dataclass

from authz import catalog
from authz.decision import Identity, IdentityKind, Mode
from authz.directory import DirectorySnapshot
from authz.engine.identity import resolve
from authz.engine.index import OrgIndex
from authz.engine.mode import legacy_reason
from authz.engine.validate import validate_target
from authz.errors import InvalidArgument, PermissionDenied


@dataclass(frozen=True, slots=True)
class Operation:
    """What the CRM component is about to do."""

    user: str  # CRM user id or e-mail
    action: str
    module: str
    record_id: str = ""
    product: str = ""  # books or subscriptions; "": decided as `attribute` says


@dataclass(frozen=True, slots=True)
class PriorDecision:
    """The Check decision an attribution cites, as the audit trail recorded it."""

    decision_id: str
    org_id: str
    crm_user: str
    action: str
    module: str
    record_id: str
    allowed: bool
    product: str = ""  # the product the decision was made in, when the trail says


@dataclass(frozen=True, slots=True)
class Attribution:
    mode: Mode
    identity: Identity
    act_as: str  # the finance user id or integration user id to act as
    display_name: str  # to record as creator or modifier
    send_from: str  # e-mail address to send from; empty when the user has none
    send_from_note: str  # why send_from is empty, for the caller to show
    attribution_id: str
    policy_revision: str
    directory_revision: int
    decision_id: str = ""
    product: str = ""  # the product acted in (recorded in the audit trail)


class AttributionDenied(PermissionDenied):
    """The CRM user has no finance identity; carries the decision reason code."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _check_decision(prior: PriorDecision, org_id: str, crm_id: str, op: Operation) -> None:
    if prior.org_id != org_id:
        raise InvalidArgument("decision_id", "the decision belongs to another organization")
    if prior.crm_user != crm_id:
        raise InvalidArgument("decision_id", "the decision was made for another user")
    if (prior.action, prior.module) != (op.action, op.module):
        raise InvalidArgument("decision_id", f"the decision was about {prior.action} on "
                              f"{prior.module}, not {op.action} on {op.module}")
    if prior.record_id and op.record_id and prior.record_id != op.record_id:
        raise InvalidArgument("decision_id", f"the decision was about record {prior.record_id}")
    if prior.product and op.product and prior.product != op.product:
        raise InvalidArgument("decision_id", f"the decision was made in {prior.product}, not "
                              f"{op.product}")
    if not prior.allowed:
        raise PermissionDenied(f"decision {prior.decision_id} did not allow {op.action} on "
                               f"{op.module}")


def attribute(org: OrgIndex, snap: DirectorySnapshot, op: Operation,
              prior: PriorDecision | None = None) -> Attribution:
    """Name the identity an operation is done as, or raise why there is none."""
    if not op.user.strip():
        raise InvalidArgument("user", "required: a CRM user id or e-mail address")
    validate_target(op.module, op.action, op.product)  # unknown modules and actions too
    candidates = _products(org, op, prior)
    attribution_id = uuid.uuid4().hex
    why = legacy_reason(org, snap)
    if why is not None:
        if prior is not None:  # legacy or not, a cited decision must be this operation's
            crm = snap.crm_user(op.user)
            _check_decision(prior, org.org_id, crm.id if crm else op.user, op)
        owner = snap.crm_user(org.integration_owner)
        identity = Identity(kind=IdentityKind.INTEGRATION_OWNER,
                            crm_user_id=org.integration_owner,
                            email=owner.email if owner else "",
                            display_name=owner.name if owner else org.integration_owner)
        return Attribution(Mode.LEGACY, identity, org.integration_owner, identity.display_name,
                           identity.email, f"legacy mode ({why}): acting as the "
                           "integration owner", attribution_id, org.revision, snap.revision,
                           product=candidates[0] if len(candidates) == 1 else "")
    resolved = resolve(org, snap, op.user)
    if resolved.reason is not None or resolved.crm is None:
        raise AttributionDenied(resolved.reason.value if resolved.reason else "user_unknown",
                                resolved.message)
    if prior is not None:
        _check_decision(prior, org.org_id, resolved.crm.id, op)
    ident, product = resolved.identity, candidates[0] if len(candidates) == 1 else ""
    if resolved.finance:
        product = _finance_product(op, candidates, resolved.finance, resolved.crm.id)
        fin = resolved.finance[product]
        ident = dataclasses.replace(  # the user's identity in that product only
            ident, display_name=fin.name,
            books_user_id=fin.user_id if product == catalog.BOOKS else "",
            subscriptions_user_id=fin.user_id if product == catalog.SUBSCRIPTIONS else "")
    act_as = ident.books_user_id or ident.subscriptions_user_id or ident.integration_user_id
    note = "" if ident.email else (f"{ident.crm_user_id} has no e-mail address of their own: "
                                   "e-mail cannot be sent as them, and is never sent as the "
                                   "integration owner instead")
    return Attribution(Mode.UNIFIED, ident, act_as, ident.display_name, ident.email, note,
                       attribution_id, org.revision, snap.revision,
                       prior.decision_id if prior else "", product)


def _products(org: OrgIndex, op: Operation, prior: PriorDecision | None) -> list[str]:
    """The connected products the operation may be in: the one named (by the request, or
    else by the decision it cites), or every connected product that has the module."""
    if op.product and op.product not in catalog.PRODUCTS:
        raise InvalidArgument("product", f"unknown product '{op.product[:64]}'; expected one of "
                              + ", ".join(catalog.PRODUCTS))
    if op.module not in catalog.ALL_MODULES:
        raise InvalidArgument("module", f"unknown module '{op.module[:64]}'")
    if op.product and op.module not in catalog.MODULES[op.product]:
        raise InvalidArgument("module", f"'{op.module}' is not a {op.product} module")
    named = op.product or (prior.product if prior is not None else "")
    if named and op.module in catalog.MODULES.get(named, ()):
        return [named] if named in org.products else []
    return [p for p in catalog.products_with(op.module) if p in org.products]


def _finance_product(op: Operation, candidates: list[str], finance: Container[str],
                     crm_id: str) -> str:
    """The product a finance user acts in (DOMAIN §5: their own Subscriptions user for a
    Subscriptions operation, never their Books user, never the integration owner)."""
    mine = [p for p in candidates if p in finance]
    if len(mine) == 1:
        return mine[0]
    if not mine:
        wanted = " or ".join(candidates) or op.product or "a connected product"
        raise AttributionDenied("no_product_identity",
                                f"{crm_id} has no active user in {wanted}: {op.module} is not "
                                "done as their user in another product, nor as the integration "
                                "owner")
    raise InvalidArgument("product", f"required: {op.module} exists in {' and '.join(mine)} "
                          f"and {crm_id} is a user of both; name the product (or cite the "
                          "Check decision)")
