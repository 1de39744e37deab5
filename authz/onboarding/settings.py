"""Field access per role and approval settings per module, as JSON, to fields.yaml and
approvals.yaml (Books has no public API for either).

Field access (`books_fields.json`; access read_write, read_only or hidden; roles by the
product's role id; admins always read_write):

    {"modules": [{"module": "invoices", "fields": [
        {"field": "discount", "personal_data": false, "default": "read_write",
         "roles": {"460000000000044": "read_only"}}]}]}

Approvals (`books_approvals.json`): per module a type (none, simple, multi_level, custom);
multi_level has levels; custom has rules with criteria (on `total`, comparators
equal/greater_than/greater_equal/less_than/less_equal, all joined by AND), a priority, and
levels or auto_approve / auto_reject; a level's approvers are roles or users, by id.
Whether approvers may approve their own records is one setting per organization here:

    {"allow_self_approval": false, "modules": [
       {"module": "invoices", "approval_type": "custom", "rules": [
          {"rule_id": "460000000070001", "rule_name": "Large invoices", "priority": 1,
           "criteria": [{"field": "total", "comparator": "greater_equal", "value": 100000}],
           "criteria_pattern": "1", "outcome": "levels",
           "levels": [{"approvers": [{"type": "role", "id": "460000000000045"},
                                     {"type": "user", "id": "460000000000101"}]}]}]}]}
"""

from __future__ import annotations

import re
from typing import Any

from authz import catalog
from authz.onboarding.exports import JsonReader
from authz.onboarding.roles import Roles
from authz.policy.reader import one_of

COMPARATORS = {"equal": "==", "greater_than": ">", "greater_equal": ">=", "less_than": "<",
               "less_equal": "<="}
CRITERIA_FIELDS = ("total",)
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_AND_ONLY = re.compile(r"^\s*\d+(\s+and\s+\d+)*\s*$", re.I)
Path_ = tuple[str | int, ...]


def _role(r: JsonReader, path: Path_, roles: Roles, rid: str) -> str | None:
    ours = roles.policy_id.get(rid)
    if ours is None:
        r.fail(path, f"unknown {roles.product} role id", rid,
               "a role_id of " + ("books" if roles.product == catalog.BOOKS else "billing")
               + "_roles.json")
    return ours


def read_fields(r: JsonReader, roles: Roles) -> dict[str, list[dict[str, Any]]]:
    """fields.yaml's document for one product: module -> field rules."""
    out: dict[str, list[dict[str, Any]]] = {}
    modules = catalog.MODULES[roles.product]
    for path, _item in r.items(("modules",)):
        r.mapping(path, ("module", "fields"))
        module = r.text((*path, "module"))
        if module and module not in modules:
            r.fail((*path, "module"), f"unknown {roles.product} module", module, one_of(modules))
            continue
        rules = out.setdefault(module, [])
        for fp, _f in r.items((*path, "fields")):
            r.mapping(fp, ("field", "personal_data", "default", "roles"))
            name = r.text((*fp, "field"))
            if name and not _FIELD.match(name):
                r.fail((*fp, "field"), "invalid field name", name, "the field's API name")
            rule: dict[str, Any] = {"field": name}
            if r.boolean((*fp, "personal_data")):
                rule["personal_data"] = True
            rule["default"] = r.string((*fp, "default"), False, choices=catalog.FIELD_ACCESS,
                                       default="read_write")
            per_role: dict[str, str] = {}
            for rid, access in r.mapping((*fp, "roles")).items():
                rp = (*fp, "roles", rid)
                ours = _role(r, rp, roles, rid)
                if ours == "admin":
                    if access != "read_write":
                        r.fail(rp, "admins always have read_write", access, "read_write")
                    continue
                if access not in catalog.FIELD_ACCESS:
                    r.fail(rp, "invalid access", access, one_of(catalog.FIELD_ACCESS))
                elif ours is not None:
                    per_role[ours] = access
            if per_role:
                rule["roles"] = dict(sorted(per_role.items()))
            rules.append(rule)
    return {m: sorted(out[m], key=lambda x: x["field"]) for m in modules if out.get(m)}


def read_approvals(r: JsonReader, roles: Roles, users: set[str]
                   ) -> tuple[dict[str, dict[str, Any]], bool | None]:
    """approvals.yaml's document for one product, and its self-approval setting."""
    out: dict[str, dict[str, Any]] = {}
    modules = catalog.MODULES[roles.product]
    r.mapping((), ("allow_self_approval", "modules"))
    self_approval = r.get(("allow_self_approval",))
    if self_approval is not None and not isinstance(self_approval, bool):
        r.fail(("allow_self_approval",), "expected true or false", self_approval)
        self_approval = None
    for path, _ in r.items(("modules",)):
        r.mapping(path, ("module", "approval_type", "levels", "rules"))
        module = r.text((*path, "module"))
        if module and module not in modules:
            r.fail((*path, "module"), f"unknown {roles.product} module", module, one_of(modules))
            continue
        kind = r.string((*path, "approval_type"), choices=("none", "simple", "multi_level",
                                                           "custom"), default="none")
        doc: dict[str, Any] = {"type": kind}
        if kind == "multi_level":
            doc["levels"] = _levels(r, (*path, "levels"), roles, users)
        elif kind == "custom":
            doc["rules"] = [_rule(r, rp, roles, users) for rp, _ in r.items((*path, "rules"))]
        out[module] = doc
    return ({m: out[m] for m in modules if m in out},
            self_approval if isinstance(self_approval, bool) else None)


def _rule(r: JsonReader, rp: Path_, roles: Roles, users: set[str]) -> dict[str, Any]:
    r.mapping(rp, ("rule_id", "rule_name", "priority", "criteria", "criteria_pattern",
                   "outcome", "levels"))
    rule: dict[str, Any] = {"id": r.text((*rp, "rule_id")),
                            "priority": r.integer((*rp, "priority"), 1, minimum=1)}
    pattern = r.text((*rp, "criteria_pattern"), required=False)
    if pattern and not _AND_ONLY.match(pattern):
        r.fail((*rp, "criteria_pattern"), "criteria joined by OR cannot be expressed", pattern,
               "criteria joined by AND (split an OR into rules of their own)")
    terms = []
    for cp, _ in r.items((*rp, "criteria")):
        r.mapping(cp, ("field", "comparator", "value"))
        fname = r.text((*cp, "field"))
        if fname and fname not in CRITERIA_FIELDS:
            r.fail((*cp, "field"), "approval criteria can read only the total", fname,
                   one_of(CRITERIA_FIELDS))
        op = r.string((*cp, "comparator"), choices=tuple(COMPARATORS))
        value = r.get((*cp, "value"))
        if isinstance(value, bool) or not isinstance(value, int | float):
            r.fail((*cp, "value"), "expected a number", value)
            continue
        if fname in CRITERIA_FIELDS and op:
            shown = str(int(value)) if float(value).is_integer() else repr(float(value))
            terms.append(f"{fname} {COMPARATORS[op]} {shown}")
    if terms:
        rule["when"] = " and ".join(terms)
    outcome = r.string((*rp, "outcome"), False, choices=("levels", "auto_approve",
                                                         "auto_reject"), default="levels")
    if outcome == "levels":
        rule["levels"] = _levels(r, (*rp, "levels"), roles, users)
    else:
        rule["outcome"] = outcome
    return rule


def _levels(r: JsonReader, path: Path_, roles: Roles, users: set[str]) -> list[dict[str, Any]]:
    levels = []
    for lp, _ in r.items(path):
        r.mapping(lp, ("approvers",))
        by_role: list[str] = []
        by_user: list[str] = []
        for ap, _ in r.items((*lp, "approvers")):
            r.mapping(ap, ("type", "id", "name"))
            kind = r.string((*ap, "type"), choices=("role", "user"))
            aid = r.text((*ap, "id"))
            if kind == "role" and aid:
                ours = _role(r, (*ap, "id"), roles, aid)
                if ours is not None:
                    by_role.append(ours)
            elif kind == "user" and aid:
                if aid not in users:
                    r.fail((*ap, "id"), f"unknown {roles.product} user id", aid,
                           "a user_id of the product's users export")
                by_user.append(aid)
        level: dict[str, Any] = {}
        if by_role:
            level["roles"] = sorted(set(by_role))
        if by_user:
            level["users"] = sorted(set(by_user))
        levels.append(level)
    return levels
