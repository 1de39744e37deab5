"""Users from the public APIs' JSON to the directory file (authz/directory_file.py).

CRM `GET /users`: id, zuid, email, full_name, status (active, disabled, deleted), role,
profile; the profile named Administrator makes a CRM admin (may run migrations).
Books / Billing `GET /users`: user_id, role_id, name, email, user_role, status (active,
inactive, invited, deleted): active stays active, inactive and invited are inactive
(no finance access until they accept), deleted users are left out. The role is the
policy's id for the user's role_id (predefined roles map to ours). Books `GET /contacts`:
each customer's owner_id (a Books user id) makes it one of that user's assigned customers.
Other fields of the API responses are ignored.
"""

from __future__ import annotations

from typing import Any

from authz.onboarding.exports import JsonReader
from authz.onboarding.roles import Roles

ADMIN_PROFILE = "administrator"


def crm_users(r: JsonReader) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path, item in r.items(("users",)):
        status = r.text((*path, "status"))
        if status not in ("active", "disabled", "deleted", "inactive"):
            r.fail((*path, "status"), "unknown CRM user status", status,
                   "active, disabled, inactive or deleted")
        uid = r.text((*path, "id"))
        if status == "deleted" or not uid:
            continue
        if uid in out:
            r.fail((*path, "id"), "duplicate CRM user id", uid)
        profile = item.get("profile")
        admin = isinstance(profile, dict) and str(profile.get("name", "")).casefold() == ADMIN_PROFILE
        user: dict[str, Any] = {"id": uid, "email": r.text((*path, "email")),
                                "name": r.text((*path, "full_name"), required=False) or uid}
        if admin:
            user["admin"] = True
        if status != "active":
            user["status"] = "disabled"
        out[uid] = user
    return [out[k] for k in sorted(out)]


def finance_users(r: JsonReader, roles: Roles, assigned: dict[str, list[str]]
                  ) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path, _ in r.items(("users",)):
        status = r.text((*path, "status"))
        if status not in ("active", "inactive", "invited", "deleted"):
            r.fail((*path, "status"), f"unknown {roles.product} user status", status,
                   "active, inactive, invited or deleted")
        uid = r.text((*path, "user_id"))
        if status == "deleted" or not uid:
            continue
        if uid in out:
            r.fail((*path, "user_id"), "duplicate user id", uid)
        rid = r.text((*path, "role_id"))
        role = roles.policy_id.get(rid)
        if rid and role is None:
            r.fail((*path, "role_id"), f"unknown {roles.product} role id", rid,
                   "one of the roles export: " + ", ".join(
                       f"{k} ({roles.names.get(v, v)})" for k, v in sorted(roles.policy_id.items())))
        user: dict[str, Any] = {"id": uid, "email": r.text((*path, "email")),
                                "name": r.text((*path, "name"), required=False) or uid,
                                "role": role or rid}
        if status != "active":
            user["status"] = "inactive"
        if assigned.get(uid):
            user["assigned_customers"] = sorted(assigned[uid])
        out[uid] = user
    return [out[k] for k in sorted(out)]


def contact_owners(r: JsonReader | None, users: set[str]) -> dict[str, list[str]]:
    """Books user id -> the customers they are contact owner of (vendors do not count)."""
    out: dict[str, list[str]] = {}
    if r is None:
        return out
    for path, _ in r.items(("contacts",)):
        if r.text((*path, "contact_type"), required=False) not in ("customer", ""):
            continue
        owner = r.text((*path, "owner_id"), required=False)
        cid = r.text((*path, "contact_id"))
        if not owner or not cid:
            continue
        if owner not in users:
            r.fail((*path, "owner_id"), "contact owner is not a user of the users export", owner,
                   "a user_id of the users export (or no owner)")
            continue
        out.setdefault(owner, []).append(cid)
    return out


def user_ids(r: JsonReader | None) -> set[str]:
    """Every user_id a users export lists (approvers and contact owners must be among them)."""
    if r is None:
        return set()
    return {str(u["user_id"]) for u in r.seq(("users",)) if isinstance(u, dict) and
            u.get("user_id") not in (None, "")}


def integration_users(r: JsonReader | None, crm_ids: set[str]) -> list[dict[str, Any]]:
    if r is None:
        return []
    out = []
    for path, _ in r.items(("integration_users",)):
        r.mapping(path, ("crm_user_id", "integration_user_id"))
        crm = r.text((*path, "crm_user_id"))
        if crm and crm not in crm_ids:
            r.fail((*path, "crm_user_id"), "not a CRM user of crm_users.json", crm)
        out.append({"crm_user": crm, "id": r.text((*path, "integration_user_id"))})
    return sorted(out, key=lambda u: str(u["crm_user"]))
