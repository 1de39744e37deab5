"""Books' (and Billing's) role editor, as JSON, to `roles.yaml` (no public API has roles).

    {"roles": [
      {"role_id": "460000000000011", "role_name": "Admin", "is_predefined": true},
      {"role_id": "460000000000044", "role_name": "Sales Executive", "is_predefined": false,
       "access_to_protected_data": false,
       "data_access": "all",                      # or "assigned_customers"
       "sections": {
         "sales": {
           "invoices": {"actions": ["view", "create", "edit"],
                        "more_permissions": ["email", "mark_as_sent"]},
           "estimates": {"full_access": true}},
         "reports": {"reports": {"full_access": true, "sections_excepted": ["accountant"]}}}}]}

Mapping (the role editor's checkboxes onto our actions, DOMAIN §3):
- `actions` are the editor's checkboxes view, create, edit, delete, approve; create also
  grants submit on transactions (anyone who may create one may submit it for approval);
  approve grants approve and reject (an approver does either).
- `more_permissions` are our action names for the editor's other boxes (email,
  mark_as_sent, convert_to_invoice, record_payment, write_off, export, edit_approved, ...).
- `full_access` grants every action of the module but final_approve (admins only) and
  view_protected_data (that is `access_to_protected_data`).
- `sections_excepted` (report sections a role may not see): our reports module has no
  sections, so such a grant is left out (deny rather than allow too much) and the file's
  header says so.
- Predefined roles keep our predefined ids (admin, staff, ...): they cannot be edited and
  their permissions are `shared/predefined_roles.yaml`. Custom roles keep Books' role ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from authz import catalog
from authz.onboarding.exports import JsonReader
from authz.policy.reader import one_of

#: The role editor's sections and the modules each holds.
SECTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    catalog.BOOKS: {
        "contacts": ("customers", "vendors"), "items": ("items",),
        "sales": ("estimates", "sales_orders", "invoices", "retainer_invoices", "credit_notes",
                  "payments_received"),
        "purchases": ("purchase_orders", "bills", "payments_made", "vendor_credits",
                      "expenses"),
        "timesheets": ("timesheets",), "reports": ("reports",), "dashboard": ("dashboard",),
        "settings": ("settings",),
    },
    catalog.SUBSCRIPTIONS: {
        "customers": ("customers",), "products": ("plans",), "subscriptions": ("subscriptions",),
        "sales": ("quotes", "invoices", "payments", "credit_notes"), "reports": ("reports",),
        "dashboard": ("dashboard",),
    },
}
#: Predefined roles by the name the product shows -> our predefined role id.
PREDEFINED: dict[str, dict[str, str]] = {
    catalog.BOOKS: {"admin": "admin", "staff": "staff",
                    "staff (assigned customers only)": "staff_assigned",
                    "timesheetstaff": "timesheet_staff", "timesheet staff": "timesheet_staff"},
    catalog.SUBSCRIPTIONS: {"admin": "admin", "staff": "staff"},
}
CHECKBOXES = {"view": ("view",), "create": ("create", "submit"), "edit": ("edit",),
              "delete": ("delete",), "approve": ("approve", "reject")}
_NOT_IN_FULL_ACCESS = ("final_approve", "view_protected_data")
#: Modules whose records are never submitted for approval (contacts, items, payments).
_NO_SUBMIT = frozenset({"customers", "vendors", "items", "plans", "timesheets", "payments_received",
                        "payments_made", "payments"})
_ROLE_ID = re.compile(r"^(?:[0-9]{1,30}|[a-z][a-z0-9_]{0,62})$")


@dataclass
class Roles:
    """One product's roles: the documents for roles.yaml, and how users' role ids map."""

    product: str
    documents: list[dict[str, Any]] = field(default_factory=list)
    policy_id: dict[str, str] = field(default_factory=dict)  # product role id -> policy id
    names: dict[str, str] = field(default_factory=dict)  # policy id -> name
    notes: list[str] = field(default_factory=list)  # what could not be mapped, and why


def read_roles(r: JsonReader, product: str) -> Roles:
    out = Roles(product)
    for path, _item in r.items(("roles",)):
        r.mapping(path, ("role_id", "role_name", "description", "is_predefined",
                         "access_to_protected_data", "data_access", "sections"))
        rid = r.text((*path, "role_id"))
        name = r.text((*path, "role_name")) or rid
        if rid and not _ROLE_ID.match(rid):
            r.fail((*path, "role_id"), "invalid role id", rid, "the product's numeric role id")
        if rid in out.policy_id:
            r.fail((*path, "role_id"), "duplicate role id", rid, "each role once")
            continue
        if r.boolean((*path, "is_predefined")):
            ours = PREDEFINED[product].get(name.casefold())
            if ours is None:
                r.fail((*path, "role_name"), f"unknown predefined {product} role", name,
                       one_of(sorted(PREDEFINED[product])))
                continue
            out.policy_id[rid], out.names[ours] = ours, name
            continue
        out.policy_id[rid], out.names[rid] = rid, name
        out.documents.append(_custom(r, path, product, rid, name, out.notes))
    return out


def _custom(r: JsonReader, path: tuple[str | int, ...], product: str, rid: str, name: str,
            notes: list[str]) -> dict[str, Any]:
    scope = r.text((*path, "data_access"), required=False) or "all"
    if scope not in ("all", "assigned_customers"):
        r.fail((*path, "data_access"), "unknown data access", scope, "all or assigned_customers")
    protected = r.boolean((*path, "access_to_protected_data"))
    permissions: dict[str, list[str]] = {}
    sections = SECTIONS[product]
    for section, modules in r.mapping((*path, "sections")).items():
        sp = (*path, "sections", section)
        if section not in sections:
            r.fail(sp, f"unknown {product} role editor section", section, one_of(sections))
            continue
        for module in (modules if isinstance(modules, dict) else {}):
            mp = (*sp, module)
            if module not in sections[section]:
                r.fail(mp, f"no module '{module}' in section {section}", module,
                       one_of(sections[section]))
                continue
            actions = _module_actions(r, mp, module)
            excepted = r.strings((*mp, "sections_excepted"))
            if excepted:
                notes.append(f"role {name} ({rid}): {module} has full access except sections "
                             f"{', '.join(excepted)}; our {module} module has no sections, so "
                             "it is not granted")
                continue
            if actions:
                permissions[module] = actions
        if not isinstance(modules, dict):
            r.fail(sp, "expected an object of modules", modules)
    doc: dict[str, Any] = {"id": rid, "name": name, "scope": scope}
    if protected:
        doc["protected_data"] = True
    doc["permissions"] = {m: permissions[m] for m in catalog.MODULES[product] if m in permissions}
    return doc


def _module_actions(r: JsonReader, mp: tuple[str | int, ...], module: str) -> list[str]:
    r.mapping(mp, ("full_access", "actions", "more_permissions", "sections_excepted"))
    available = catalog.actions_for(module)
    granted: set[str] = set()
    if r.boolean((*mp, "full_access")):
        granted.update(a for a in available if a not in _NOT_IN_FULL_ACCESS)
    for k, box in enumerate(r.strings((*mp, "actions"))):
        if box not in CHECKBOXES:
            r.fail((*mp, "actions", k), "unknown role editor checkbox", box, one_of(CHECKBOXES))
            continue
        granted.update(a for a in CHECKBOXES[box] if a in available
                       and not (a == "submit" and module in _NO_SUBMIT))
    for k, action in enumerate(r.strings((*mp, "more_permissions"))):
        if action not in available or action in CHECKBOXES or action == "view_protected_data":
            r.fail((*mp, "more_permissions", k), f"not a further permission of {module}", action,
                   one_of(a for a in available if a not in CHECKBOXES
                          and a != "view_protected_data"))
            continue
        granted.add(action)
    return [a for a in available if a in granted]

