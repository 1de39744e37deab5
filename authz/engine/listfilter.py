"""List filtering: which records may a user act on, as one filter a report engine applies.

Checking each record of a report is one decision per row; instead, the same rules as
`decide` are turned into a condition over record attributes (owner, customer, status,
location, total, approval level, creator) that a report engine evaluates itself, e.g. as SQL.
A record passes the filter exactly when `decide` would allow the action on it (with no
fields written): the tests check that on a real table.

Filter format (JSON-friendly dicts):
  {"op": "true"} | {"op": "false"}
  {"op": "and" | "or", "args": [filter, ...]} | {"op": "not", "arg": filter}
  {"op": "eq" | "ne", "field": F, "value": V}
  {"op": "in" | "not_in", "field": F, "values": [V, ...]}
    with "fold": true, the field is compared lower-cased (SQL LOWER(F)); values are
    lower-case already (a record's creator, compared with every identity of the user)
  {"op": "range", "field": "total", "lo": x|null, "lo_closed": b, "hi": x|null, "hi_closed": b}
Fields: owner, customer_id, status, location, total, approval_level, created_by.
An empty status counts as unapproved; an approval_level of 0 counts as level 1 in a
one-level flow (in a flow of several levels, no level matches it).
"""

from __future__ import annotations

import math
from typing import Any

from authz import catalog
from authz.decision import Channel
from authz.directory import DirectorySnapshot
from authz.engine.approvers import PolicyView, is_named
from authz.engine.decide import own_identities
from authz.engine.identity import resolve
from authz.engine.index import FlowInfo, ModuleApprovalInfo, OrgIndex
from authz.engine.mode import legacy_reason
from authz.errors import InvalidArgument

Filter = dict[str, Any]
TRUE: Filter = {"op": "true"}
FALSE: Filter = {"op": "false"}
FIELDS = ("owner", "customer_id", "status", "location", "total", "approval_level",
          "created_by")


def and_(*args: Filter) -> Filter:
    parts = [a for a in args if a != TRUE]
    if any(a == FALSE for a in parts):
        return FALSE
    if not parts:
        return TRUE
    return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}


def or_(*args: Filter) -> Filter:
    parts = [a for a in args if a != FALSE]
    if any(a == TRUE for a in parts):
        return TRUE
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else {"op": "or", "args": parts}


def not_(arg: Filter) -> Filter:
    if arg == TRUE:
        return FALSE
    if arg == FALSE:
        return TRUE
    return {"op": "not", "arg": arg}


def _flow_cond(flow: FlowInfo) -> Filter:
    if not flow.has_criteria:
        return TRUE
    return {"op": "range", "field": "total",
            "lo": None if math.isinf(flow.lo) else flow.lo, "lo_closed": flow.lo_closed,
            "hi": None if math.isinf(flow.hi) else flow.hi, "hi_closed": flow.hi_closed}


#: A record that carries its total (a criterion on any total: SQL `total IS NOT NULL`).
TOTAL_GIVEN: Filter = {"op": "range", "field": "total", "lo": None, "lo_closed": False,
                       "hi": None, "hi_closed": False}


def _reads_total(approval: ModuleApprovalInfo) -> bool:
    """Whether picking the record's approval rule reads its total (as decide's `_flow_for`:
    a rule with criteria comes before any rule without): Check then refuses a record
    without one, so the filter leaves such records out."""
    return bool(approval.flows) and approval.flows[0].has_criteria


def _level_is(level: int, levels: int) -> Filter:
    """A record at `level`; an unset level (0) counts as level 1 only in a one-level flow
    (Check refuses an approval without its level where the rule has several)."""
    values = [0, 1] if level == 1 and levels == 1 else [level]
    return {"op": "in", "field": "approval_level", "values": values}


def _approver_cond(view: PolicyView, approval: ModuleApprovalInfo, roles: tuple[str, ...],
                   email: str, uid: str, product: str, module: str, action: str, mine: Filter,
                   channel: Channel) -> Filter:
    """Records whose applicable rule and current level this user may approve (or reject):
    as a named approver of the level (by e-mail or product user id), or with a role that
    approves it and grants the action (on every record, or on their own customers' only)."""
    any_grant = view.grant(roles, product, module, action, False, channel.value) is not None
    own_grant = view.grant(roles, product, module, action, True, channel.value) is not None
    by_role = TRUE if any_grant else (mine if own_grant else FALSE)
    options: list[Filter] = []
    earlier: list[Filter] = []
    for flow in approval.flows:
        applies = and_(_flow_cond(flow), *(not_(e) for e in earlier))
        earlier.append(_flow_cond(flow))
        if flow.outcome != "levels":
            continue
        levels: list[Filter] = []
        for n in range(1, flow.levels + 1):
            if is_named(view, email, uid, product, module, flow.id, n):
                levels.append(_level_is(n, flow.levels))
            elif view.is_approver(roles, "", product, module, flow.id, n):
                levels.append(and_(_level_is(n, flow.levels), by_role))
        options.append(and_(applies, or_(*levels)))
    return or_(*options)


def record_filter(org: OrgIndex, snap: DirectorySnapshot, user: str, module: str, action: str,
                  view: PolicyView | None = None, channel: Channel = Channel.CRM,
                  product: str = "") -> Filter:
    """The condition on records under which `user` may take `action` in `module`; with a
    `product`, only that product's roles count (as in a Check naming the product), so the
    filter is never wider than Check for the same product."""
    if module not in catalog.ALL_MODULES:
        raise InvalidArgument("module", f"unknown module '{module}'")
    if product and module not in catalog.MODULES.get(product, ()):
        raise InvalidArgument("product", f"'{module}' is not a module of product '{product}'")
    if action not in catalog.actions_for(module):
        raise InvalidArgument("action", f"unknown action '{action}' on {module}")
    if legacy_reason(org, snap) is not None:
        return TRUE
    v: PolicyView = view if view is not None else org
    resolved = resolve(org, snap, user)
    if resolved.reason is not None or resolved.crm is None:
        return FALSE
    ident, crm = resolved.identity, resolved.crm
    if ident.integration_user_id and channel == Channel.DIRECT:
        return FALSE
    roles, email = ident.roles, (crm.email if resolved.finance else "")
    # Assigned-customers scope, as decide: the user owns the record or its customer is theirs.
    customers = sorted({c for f in resolved.finance.values() for c in f.assigned_customers})
    mine: Filter = or_({"op": "eq", "field": "owner", "value": crm.id},
                       {"op": "in", "field": "customer_id", "values": customers}
                       if customers else FALSE)
    own = own_identities(ident, crm, snap)
    products = [p for p in ((product,) if product else catalog.products_with(module))
                if p in org.products]
    approving = action in ("approve", "reject")
    options: list[Filter] = []
    taken: list[Filter] = []  # grant conditions of earlier products (first match wins)
    for product in products:
        if approving:
            grant = TRUE if product == products[0] else FALSE
        elif v.grant(roles, product, module, action, False, channel.value) is not None:
            grant = TRUE
        elif v.grant(roles, product, module, action, True, channel.value) is not None:
            grant = mine
        else:
            grant = FALSE
        here = and_(grant, *(not_(t) for t in taken))
        taken.append(grant)
        if here == FALSE:
            continue
        options.append(and_(here, _product_rules(org, v, resolved.finance.get(product), roles,
                                                 email, own, product, module, action, mine,
                                                 channel)))
    return or_(*options)


def _product_rules(org: OrgIndex, v: PolicyView, fin: Any, roles: tuple[str, ...], email: str,
                   own: frozenset[str], product: str, module: str, action: str, mine: Filter,
                   channel: Channel) -> Filter:
    conds: list[Filter] = []
    if fin is not None and fin.locations:
        conds.append({"op": "in", "field": "location", "values": sorted(fin.locations)})
    approval = org.approvals.get((product, module))
    unapproved: Filter = {"op": "not_in", "field": "status", "values": sorted(
        catalog.PAST_APPROVAL.get(module, catalog.APPROVED_ONLY))}
    if approval is not None and approval.type != "none":
        if action in approval.blocked:
            conds.append(not_(unapproved))
        after = catalog.AFTER_APPROVAL.get(action)
        if after:
            can_assigned = v.grant(roles, product, module, after, True, channel.value) is not None
            can_any = v.grant(roles, product, module, after, False, channel.value) is not None
            conds.append(or_(unapproved, TRUE if can_any else (mine if can_assigned else FALSE)))
        if action in catalog.WRITE_ACTIONS and _reads_total(approval):
            conds.append(or_(not_(unapproved), TOTAL_GIVEN))  # the obligation reads it
        if action in catalog.APPROVAL_ACTIONS:
            conds.append({"op": "eq", "field": "status", "value": "pending_approval"})
            if action != "final_approve" and _reads_total(approval):
                conds.append(TOTAL_GIVEN)
            if not org.allow_self_approval:  # any identity of the user, any case
                conds.append({"op": "not_in", "field": "created_by", "values": sorted(own),
                              "fold": True})
            if action != "final_approve":
                conds.append(_approver_cond(v, approval, roles, email,
                                            fin.user_id if fin is not None else "", product,
                                            module, action, mine, channel))
    elif action in catalog.APPROVAL_ACTIONS:
        return FALSE
    return and_(*conds)


def matches(f: Filter, record: dict[str, Any]) -> bool:
    """Evaluate a filter on one record (reference semantics for engines and tests)."""
    op = f["op"]
    if op == "true":
        return True
    if op == "false":
        return False
    if op == "and":
        return all(matches(a, record) for a in f["args"])
    if op == "or":
        return any(matches(a, record) for a in f["args"])
    if op == "not":
        return not matches(f["arg"], record)
    value = record.get(f["field"])
    if op == "eq":
        return bool(value == f["value"])
    if op == "ne":
        return bool(value != f["value"])
    if f.get("fold") and isinstance(value, str):
        value = value.lower()
    if op == "in":
        return value in f["values"]
    if op == "not_in":
        return value not in f["values"]
    if op == "range":
        if value is None:
            return False
        lo, hi = f["lo"], f["hi"]
        if lo is not None and (value < lo or (value == lo and not f["lo_closed"])):
            return False
        return not (hi is not None and (value > hi or (value == hi and not f["hi_closed"])))
    raise ValueError(f"unknown filter op {op!r}")


def to_sql(f: Filter, columns: dict[str, str] | None = None) -> tuple[str, list[Any]]:
    """A SQL WHERE clause (qmark parameters) for a table with the record columns."""
    cols = {name: name for name in FIELDS} | (columns or {})
    params: list[Any] = []

    def emit(node: Filter) -> str:
        op = node["op"]
        if op == "true":
            return "1=1"
        if op == "false":
            return "1=0"
        if op in ("and", "or"):
            return "(" + f" {op.upper()} ".join(emit(a) for a in node["args"]) + ")"
        if op == "not":
            return f"(NOT {emit(node['arg'])})"
        col = cols[node["field"]]
        if node.get("fold"):
            col = f"LOWER({col})"
        if op in ("eq", "ne"):
            params.append(node["value"])
            return f"{col} {'=' if op == 'eq' else '<>'} ?"
        if op in ("in", "not_in"):
            params.extend(node["values"])
            marks = ", ".join("?" for _ in node["values"])
            return f"{col} {'IN' if op == 'in' else 'NOT IN'} ({marks})"
        if op == "range":
            parts = [f"{col} IS NOT NULL"]
            if node["lo"] is not None:
                params.append(node["lo"])
                parts.append(f"{col} {'>=' if node['lo_closed'] else '>'} ?")
            if node["hi"] is not None:
                params.append(node["hi"])
                parts.append(f"{col} {'<=' if node['hi_closed'] else '<'} ?")
            return "(" + " AND ".join(parts) + ")"
        raise ValueError(f"unknown filter op {op!r}")

    return emit(f), params
