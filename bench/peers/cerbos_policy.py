"""Cerbos resource policies generated from an organization's compiled policy, and the
Cerbos questions that match our Check requests.

The source is the same `OrgIndex` the server decides with (organization sources ->
our compiler -> our loader), so both servers answer from one policy. One resource
policy per organization: resource kind `record`, policy version = the organization id
(word characters only), actions `<module>:<action>`, one rule per group of roles that
share a condition. Conditions are CEL over the record's attributes (owner, status,
approval level, total, creator, location, channel, product, written fields) and the
principal's (locations per product, approver subjects, assigned customers).

What Cerbos has no equivalent for is done by its caller, as a Cerbos deployment does:
the directory. `principal()` resolves the CRM user with our resolver (e-mail match,
CRM status, finance status, integration user) and sends the expanded roles, or the
role `nobody` when the user has no identity. Modelled differences (see `DIFFERENCES`)
are reported beside the agreement count.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from authz import catalog
from authz.decision import CheckRequest
from authz.directory import DirectorySnapshot
from authz.engine.decide import own_identities
from authz.engine.identity import resolve
from authz.engine.index import FlowInfo, OrgIndex
from authz.policy.compiler import INTEGRATION_ROLE, approver_key, user_subject

KIND = "record"
NOBODY = "nobody"
DIFFERENCES = (
    "identity: Cerbos has no directory, so its caller resolves the CRM user (our resolver) "
    "and sends roles and attributes; authz does this inside Check",
    "several roles at once (a user in two products): Cerbos allows when any one role's rule "
    "allows, with that role's field masks; authz merges masks over all roles first",
    "Cerbos answers allow/deny per action; authz's reasons, masks and approval obligations "
    "are not compared; a question authz refuses (INVALID_ARGUMENT: an approval rule reads a "
    "total the request lacks) counts as not allowed, and Cerbos denies it",
)


def past_approval(module: str) -> list[str]:
    """States past approval on `module`, as authz's decide reads them: approved and the
    module's own lifecycle; any other status (none, draft, another module's) is not."""
    return sorted(catalog.PAST_APPROVAL.get(module, catalog.APPROVED_ONLY))


def _unapproved_var(module: str) -> str:
    return f"unapproved_{module}"


def unapproved(module: str) -> str:
    """The policy variable that holds "the record is not past approval" for `module`."""
    return f"V.{_unapproved_var(module)}"


def _unapproved_vars(idx: OrgIndex) -> dict[str, str]:
    """One variable per module with approval on (the only rules that read one)."""
    return {_unapproved_var(module): f"!(R.attr.status in {_list(past_approval(module))})"
            for (product, module), approval in sorted(idx.approvals.items())
            if approval.type != "none" and product in idx.products}


def version(org_id: str) -> str:
    """A Cerbos policy version for an organization (`^[[:word:]]*$`)."""
    return re.sub(r"\W", "_", org_id)


def _q(text: str) -> str:
    return json.dumps(text)


def _list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def _grant_cond(rule: tuple[str, str]) -> list[str]:
    scope, chan = rule
    out = []
    if scope != "all":  # the record's owner is the user, or its customer is assigned to them
        out.append('(R.attr.owner == P.id || (R.attr.customer_id != "" && '
                   "R.attr.customer_id in P.attr.customers))")
    if chan != "*":
        out.append(f"R.attr.channel == {_q(chan)}")
    return out


def _num(x: float) -> str:
    return repr(float(x))


def _flow_match(flow: FlowInfo) -> str:
    if not flow.has_criteria:
        return "true"
    parts = ["has(R.attr.total)"]
    if flow.lo != float("-inf"):
        parts.append(f"R.attr.total {'>=' if flow.lo_closed else '>'} {_num(flow.lo)}")
    if flow.hi != float("inf"):
        parts.append(f"R.attr.total {'<=' if flow.hi_closed else '<'} {_num(flow.hi)}")
    return "(" + " && ".join(parts) + ")"


def _approver(idx: OrgIndex, role: str, product: str, module: str, action: str,
              flow: FlowInfo) -> str:
    """A named approver of the record's level (by e-mail or product user id), or a role
    that approves the level and grants the action."""
    if flow.outcome != "levels":
        return "false"
    grant = idx.rule(role, product, module, action)
    alts = []
    for level in range(1, flow.levels + 1):
        roles, users = idx.level_approvers(product, module, flow.id, level)
        who = []
        if role in roles and grant is not None:
            who.append(" && ".join(_grant_cond(grant)) or "true")
        if users:  # named by e-mail or by their user id in the product
            who.append("P.attr.subjects.exists(s, s in "
                       + _list([user_subject(u) for u in users]) + ")")
        if who:
            alts.append(f"(V.level == {_num(level)} && ({' || '.join(who)}))")
    return "(" + " || ".join(alts) + ")" if alts else "false"


Groups = dict[str, dict[str, list[str]]]  # condition -> role -> actions


def _condition(idx: OrgIndex, role: str, product: str, module: str, action: str,
               refusals: Groups) -> list[str] | None:
    """The CEL conjuncts under which `role` may take `action`, or None (never). Limits
    of the role's grant go into `refusals` (deny rules: fewer CEL expressions for Cerbos
    to compile than one condition per allow rule); limits that do not depend on the
    role are deny rules too (`_denials`)."""
    conds: list[str] = []
    if len(idx.products) > 1:  # a single-product organization has these as deny rules
        conds.append(f'(R.attr.product == "" || R.attr.product == {_q(product)})')
        if role != INTEGRATION_ROLE:
            conds.append(_located(product))
    if action not in ("approve", "reject"):
        rule = idx.rule(role, product, module, action)
        if rule is None:
            return None
        limit = _grant_cond(rule)
        if limit:  # a scoped or channel-bound grant: refused outside it
            refusals[_of_product(idx, product, " || ".join(_negate(limit)))][role].append(
                f"{module}:{action}")
    approval = idx.approvals.get((product, module))
    if approval is not None and approval.type != "none":
        after = catalog.AFTER_APPROVAL.get(action)
        if after:
            rule = idx.rule(role, product, module, after)
            if rule is None or _grant_cond(rule):
                why = f"!{unapproved(module)}" + ("" if rule is None else " && (" + " || ".join(
                    _negate(_grant_cond(rule))) + ")")
                refusals[_of_product(idx, product, why)][role].append(f"{module}:{action}")
        if action in ("approve", "reject"):
            chain = "false"
            for flow in reversed(approval.flows):
                chain = (f"({_flow_match(flow)} ? "
                         f"{_approver(idx, role, product, module, action, flow)} : {chain})")
            conds.append(chain)
    elif action in catalog.APPROVAL_ACTIONS:
        return None
    return conds


def _of_product(idx: OrgIndex, product: str, expr: str) -> str:
    """A deny condition of one product's module, in an organization of several products:
    a question that names another product (a module both have, such as invoices) is
    decided by that product's policy alone, so this one must not refuse it."""
    if len(idx.products) == 1:
        return expr
    return f'(R.attr.product == "" || R.attr.product == {_q(product)}) && ({expr})'


def _negate(conds: list[str]) -> list[str]:
    return [f"!{c}" if c.startswith("(") else f"!({c})" for c in conds]


def _needs_total(approval: Any) -> bool:
    """Whether choosing the record's approval rule reads its total (a rule with criteria
    comes before any rule without): authz then refuses a question that lacks it."""
    return bool(approval.flows) and bool(approval.flows[0].has_criteria)


def _located(product: str) -> str:
    loc = f"P.attr.loc_{product}"
    return f"(size({loc}) == 0 || R.attr.location in {loc})"


def _deny(actions: list[str], roles: list[str], expr: str) -> dict[str, Any]:
    return {"actions": actions, "effect": "EFFECT_DENY", "roles": roles,
            "condition": {"match": {"expr": expr}}}


def _denials(idx: OrgIndex) -> list[dict[str, Any]]:
    """Rules that refuse whatever the role (Cerbos: a matching deny beats any allow)."""
    out = [_deny(["*"], [INTEGRATION_ROLE], 'R.attr.channel == "direct"')]
    if len(idx.products) == 1:
        product = idx.products[0]
        out.append(_deny(["*"], ["*"], f'R.attr.product != "" && R.attr.product != {_q(product)}'))
        out.append(_deny(["*"], ["*"], f"!{_located(product)}"))
    for (product, module), approval in sorted(idx.approvals.items()):
        if approval.type == "none" or product not in idx.products:
            continue
        blocked = sorted(f"{module}:{a}" for a in approval.blocked)
        if blocked:
            out.append(_deny(blocked, ["*"], _of_product(idx, product, unapproved(module))))
        not_pending = 'R.attr.status != "pending_approval"'
        if not idx.allow_self_approval:  # "one's own": any identity of the user, any case
            not_pending += " || R.attr.created_by.lowerAscii() in P.attr.own"
        out.append(_deny(sorted(f"{module}:{a}" for a in catalog.APPROVAL_ACTIONS), ["*"],
                         _of_product(idx, product, not_pending)))
        if _needs_total(approval):  # refused (INVALID_ARGUMENT) rather than decided: never allow
            out.append(_deny(sorted(f"{module}:{a}" for a in catalog.WRITE_ACTIONS), ["*"],
                             _of_product(idx, product,
                                         f"{unapproved(module)} && !has(R.attr.total)")))
            out.append(_deny([f"{module}:approve", f"{module}:reject"], ["*"],
                             _of_product(idx, product, "!has(R.attr.total)")))
    for (product, module), per_field in sorted(idx.fields.items()):
        if product not in idx.products:
            continue
        actions = [f"{module}:{a}" for a in catalog.actions_for(module)]
        for name, per_role in sorted(per_field.items()):
            # Written fields a role sees hidden or read only (one role each: see DIFFERENCES).
            roles = sorted(r for r, access in per_role.items() if access != "read_write")
            if roles:
                out.append(_deny(actions, roles, _of_product(
                    idx, product, f"{_q(name)} in R.attr.write_fields")))
    return out


def resource_policy(idx: OrgIndex) -> dict[str, Any]:
    """One organization's Cerbos resource policy (a JSON-compatible YAML document)."""
    head: dict[str, Any] = {"resource": KIND, "version": version(idx.org_id)}
    if idx.effective_mode != "unified":  # legacy: the CRM acts as the integration owner
        head["rules"] = [{"actions": ["*"], "effect": "EFFECT_ALLOW", "roles": ["*"]}]
        return {"apiVersion": "api.cerbos.dev/v1", "resourcePolicy": head}
    roles = sorted({*idx.role_names, INTEGRATION_ROLE,
                    *idx.role_rules, *(r for by_role in idx.other_grants.values() for r in by_role)})
    # condition -> role -> actions; then roles with the same actions share one rule
    groups: Groups = defaultdict(lambda: defaultdict(list))
    refusals: Groups = defaultdict(lambda: defaultdict(list))
    for product in idx.products:
        for module in catalog.MODULES[product]:
            for action in catalog.actions_for(module):
                for role in roles:
                    conds = _condition(idx, role, product, module, action, refusals)
                    if conds is not None:
                        groups[" && ".join(conds)][role].append(f"{module}:{action}")
    rules = [*_denials(idx), *_rules(refusals, "EFFECT_DENY"), *_rules(groups, "EFFECT_ALLOW")]
    head["variables"] = {"local": {
        **_unapproved_vars(idx),
        "level": "R.attr.approval_level == 0.0 ? 1.0 : R.attr.approval_level",
    }}
    head["rules"] = rules
    return {"apiVersion": "api.cerbos.dev/v1", "resourcePolicy": head}


def _rules(groups: Groups, effect: str) -> list[dict[str, Any]]:
    """Rules for condition -> role -> actions; roles with the same actions share one."""
    out = []
    for cond, by_role in groups.items():
        # Roles sharing an action set, or actions sharing a role set: whichever makes
        # fewer rules (each conditional rule is a CEL program Cerbos compiles).
        by_actions: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for role, actions in by_role.items():
            by_actions[tuple(sorted(set(actions)))].append(role)
        by_roles: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for action in sorted({a for acts in by_role.values() for a in acts}):
            by_roles[tuple(sorted(r for r, acts in by_role.items() if action in acts))].append(
                action)
        pairs = (sorted((list(a), sorted(r)) for a, r in by_actions.items())
                 if len(by_actions) <= len(by_roles)
                 else sorted((acts, list(r)) for r, acts in by_roles.items()))
        for actions, rs in pairs:
            rule: dict[str, Any] = {"actions": actions, "effect": effect, "roles": rs}
            if cond:
                rule["condition"] = {"match": {"expr": cond}}
            out.append(rule)
    return out


def write_policies(indexes: list[OrgIndex], folder: Path) -> int:
    """Write one policy file per organization into `folder`; returns the rule count."""
    folder.mkdir(parents=True, exist_ok=True)
    rules = 0
    for idx in indexes:
        doc = resource_policy(idx)
        rules += len(doc["resourcePolicy"]["rules"])
        (folder / f"{version(idx.org_id)}.yaml").write_text(json.dumps(doc), encoding="utf-8")
    return rules


def principal(idx: OrgIndex, snap: DirectorySnapshot, req: CheckRequest) -> dict[str, Any]:
    """The Cerbos principal for a Check's user, resolved from the directory."""
    r = resolve(idx, snap, req.user)
    pid = r.crm.id if r.crm is not None else req.user
    if r.reason is not None or r.crm is None:
        return {"id": pid, "roles": [NOBODY], "attr": {}}
    subjects = [user_subject(r.crm.email)] if r.finance else []
    customers: set[str] = set()
    attr: dict[str, Any] = {}
    for product in catalog.PRODUCTS:
        fin = r.finance.get(product)
        attr[f"loc_{product}"] = list(fin.locations) if fin is not None else []
        if fin is not None:
            subjects.append(user_subject(approver_key(product, fin.user_id)))
            customers |= fin.assigned_customers
    attr["subjects"] = subjects
    attr["customers"] = sorted(customers)
    attr["own"] = sorted(own_identities(r.identity, r.crm, snap))
    return {"id": pid, "roles": list(r.identity.roles), "attr": attr}


def resource(req: CheckRequest) -> dict[str, Any]:
    """The Cerbos resource for a Check's record."""
    rec = req.record
    attr: dict[str, Any] = {
        "owner": rec.owner, "customer_id": rec.customer_id, "status": rec.status,
        "approval_level": float(rec.approval_level),
        "created_by": rec.created_by, "location": rec.location, "channel": req.channel.value,
        "product": req.product, "write_fields": list(req.write_fields)}
    if rec.total is not None:
        attr["total"] = float(rec.total)
    return {"kind": KIND, "policy_version": version(req.org_id), "id": rec.record_id or "r",
            "attr": attr}


def action(req: CheckRequest) -> str:
    return f"{req.module}:{req.action}"
