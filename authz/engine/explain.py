"""Explain a decision by its sources: the YAML file:line of the rule that granted or
refused, through the source map the compiler writes beside each organization
(`compiler.source_map`). For denials as well as grants; for refusals that are not the
policy's (an unknown or unmigrated user) it says the directory decided."""

from __future__ import annotations

from typing import Any

from authz.decision import CheckRequest, Decision, Reason
from authz.engine.index import OrgIndex
from authz.policy.compiler import INTEGRATION_ROLE

_DIRECTORY = {Reason.USER_UNKNOWN, Reason.NOT_MIGRATED, Reason.CRM_USER_DISABLED,
              Reason.FINANCE_USER_INACTIVE, Reason.LOCATION_NOT_ALLOWED}
_APPROVAL = {Reason.BLOCKED_UNTIL_APPROVED, Reason.APPROVED_RECORD_LOCKED,
             Reason.NOT_PENDING_APPROVAL}


def _get(m: dict[str, Any], kind: str, key: str) -> str:
    value = m.get(kind, {}).get(key, "")
    return str(value)


def _role(org: OrgIndex, role: str, product: str, module: str) -> str:
    m = org.sources
    if role == INTEGRATION_ROLE:
        return f"{m.get('integration', '')}: the integration-user permission set"
    at = _get(m, "grants", f"{role} {product}/{module}") or _get(m, "roles", role)
    return f"{at}: role {org.role_names.get(role, role)} ({role})"


def _flow(org: OrgIndex, req: CheckRequest, product: str) -> str:
    approval = org.approvals.get((product, req.module))
    if approval is None:
        return ""
    flow = approval.flow_for(req.record.total)
    if flow is None:
        return ""
    at = _get(org.sources, "rules", f"{product}/{req.module}/{flow.id}")
    return f"{at}: approval rule {flow.id}" if at else ""


def sources(req: CheckRequest, d: Decision, org: OrgIndex) -> tuple[str, ...]:
    """`source: file:line: what` lines for a decision (empty without a source map)."""
    m = org.sources
    if not m:
        return ()
    product = d.product or next((p for p in org.products), "")
    module, action, roles = req.module, req.action, d.identity.roles
    out: list[str] = []
    r = d.reason
    if r in _DIRECTORY:
        out.append(f"the directory, not the policy: {r.value}")
    elif r in (Reason.LEGACY_MODE, Reason.PRODUCT_NOT_CONNECTED, Reason.SELF_APPROVAL):
        out.append(f"{m.get('organization', '')}: organization settings")
        if r == Reason.LEGACY_MODE:
            out.append(f"{m.get('release', '')}: phased release of the unified mode")
    elif r == Reason.ACTION_NOT_GRANTED:
        out += [f"{_role(org, role, product, module)} grants no {action} on {module}"
                for role in roles]
    elif r == Reason.OUT_OF_SCOPE:
        out += [f"{_role(org, role, product, module)}: assigned customers only"
                for role in roles]
    elif r == Reason.FIELD_NOT_WRITABLE:
        blocked = set(d.hidden_fields) | set(d.read_only_fields)
        out += [f"{_get(m, 'fields', f'{product}/{module}/{f}')}: field rule {f}"
                for f in req.write_fields if f in blocked]
    elif r in _APPROVAL:
        at = _get(m, "approvals", f"{product}/{module}")
        out.append(f"{at}: approval of {module}" if at
                   else f"{m.get('organization', '')}: no approval set up for {module}")
    elif r == Reason.NOT_APPROVER:
        out.append(_flow(org, req, product) or _get(m, "approvals", f"{product}/{module}"))
    elif r == Reason.GRANTED:
        if action in ("approve", "reject"):
            out.append(_flow(org, req, product))
        granting = next((role for role in roles
                         if org.rule(role, product, module, action) is not None), None)
        if granting is not None and "is a named approver" not in d.message:
            out.append(f"{_role(org, granting, product, module)} grants {action} on {module}")
        if d.approval is not None and d.approval.rule:
            at = _get(m, "rules", f"{product}/{module}/{d.approval.rule}")
            out.append(f"{at}: approval rule {d.approval.rule}")
    return tuple(f"source: {line}" for line in out if line)
