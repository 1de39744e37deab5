"""Directory files: users of one organization in YAML, for `authz directory import`,
for policy test suites and for seeding the example organization.

    org: acme-eu
    crm_users:
      - {id: u-anna, email: anna@acme.example, name: Anna Schmidt, admin: true}
      - {id: u-olga, email: olga@acme.example, name: Olga, status: disabled}
    books_users:
      - {id: b-anna, email: Anna@Acme.example, name: Anna Schmidt, role: admin}
      - {id: b-sam, email: sam@acme.example, name: Sam, role: sales_rep,
         status: inactive, locations: [berlin], assigned_customers: [c-1001, c-1002]}
    subscriptions_users:
      - {id: s-sam, email: sam@acme.example, name: Sam, role: subscription_sales}
    integration_users:
      - {crm_user: u-ivy, id: iu-ivy}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from authz import catalog
from authz.directory import CrmUser, DirectorySnapshot, FinanceUser, IntegrationUser, email_key
from authz.directory_check import DirectoryPolicy, check
from authz.policy.errors import PolicyError, Problem
from authz.policy.yamlsrc import Source, load

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PRODUCT_KEYS = {"books_users": catalog.BOOKS, "subscriptions_users": catalog.SUBSCRIPTIONS}
#: The keys each list's items may have (anything else is refused, naming it).
ITEM_KEYS = {
    "crm_users": ("id", "email", "name", "status", "admin"),
    "books_users": ("id", "email", "name", "role", "status", "locations", "assigned_customers"),
    "subscriptions_users": ("id", "email", "name", "role", "status", "locations",
                            "assigned_customers"),
    "integration_users": ("crm_user", "id"),
}


@dataclass(frozen=True, slots=True)
class DirectoryFile:
    """The users a directory file lists."""

    org_id: str
    crm_users: tuple[CrmUser, ...]
    finance_users: tuple[FinanceUser, ...]
    integration_users: tuple[IntegrationUser, ...]

    def snapshot(self, revision: int = 1) -> DirectorySnapshot:
        return DirectorySnapshot.build(self.org_id, revision, self.crm_users,
                                       self.finance_users, self.integration_users)


def _text(src: Source, item: dict[str, Any], key: str, path: tuple[str | int, ...],
          problems: list[Problem], required: bool = True) -> str:
    value = item.get(key)
    if value is None:
        if required:
            problems.append(Problem(src.at(path), f"missing '{key}'"))
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        problems.append(Problem(src.at((*path, key)), f"'{key}' must be text", repr(value)))
        return ""
    return str(value)


def _texts(src: Source, item: dict[str, Any], key: str, path: tuple[str | int, ...],
           problems: list[Problem]) -> tuple[str, ...]:
    value = item.get(key) or []
    if not isinstance(value, list):
        problems.append(Problem(src.at((*path, key)), f"'{key}' must be a list", repr(value)))
        return ()
    out: list[str] = []
    for j, x in enumerate(value):
        if isinstance(x, str | int) and not isinstance(x, bool) and str(x):
            out.append(str(x))
        else:
            problems.append(Problem(src.at((*path, key, j)), f"'{key}' items must be text",
                                    repr(x)))
    return tuple(out)


def parse(src: Source, policy: DirectoryPolicy | None = None) -> DirectoryFile:
    """Validate a parsed directory file (against the organization's policy when given:
    roles, products, quota); raises PolicyError with located problems."""
    problems: list[Problem] = []
    data = src.data if isinstance(src.data, dict) else {}
    allowed = {"org", "crm_users", "books_users", "subscriptions_users", "integration_users"}
    for key in data:
        if key not in allowed:
            problems.append(Problem(src.at((key,)), f"unknown key '{key}'", "",
                                    "one of: " + ", ".join(sorted(allowed))))
    org = data.get("org")
    if not isinstance(org, str) or not org:
        problems.append(Problem(src.at(("org",)), "missing 'org' (the organization id)"))
        org = ""

    def items(key: str) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
        value = data.get(key) or []
        if not isinstance(value, list):
            problems.append(Problem(src.at((key,)), f"'{key}' must be a list"))
            return []
        out: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                out.append(((key, i), item))
                for k in item:
                    if k not in ITEM_KEYS[key]:
                        problems.append(Problem(src.at((key, i, k)), f"unknown key '{k}'",
                                                "", "one of: " + ", ".join(ITEM_KEYS[key])))
            else:
                problems.append(Problem(src.at((key, i)), "expected a mapping", repr(item)))
        return out

    crm: dict[str, CrmUser] = {}
    for path, item in items("crm_users"):
        uid = _text(src, item, "id", path, problems)
        email = _text(src, item, "email", path, problems, required=False)
        if email and not _EMAIL.match(email):
            problems.append(Problem(src.at((*path, "email")), "invalid e-mail address", email))
        status = item.get("status", "active")
        if status not in ("active", "disabled"):
            problems.append(Problem(src.at((*path, "status")), "invalid status", repr(status),
                                    "active or disabled"))
            status = "disabled"
        if uid in crm:
            problems.append(Problem(src.at(path), f"duplicate CRM user '{uid}'"))
        crm[uid] = CrmUser(uid, email, _text(src, item, "name", path, problems, False) or uid,
                           cast(Any, status), bool(item.get("admin", False)))
    finance: list[FinanceUser] = []
    for key, product in _PRODUCT_KEYS.items():
        seen: set[str] = set()
        for path, item in items(key):
            uid = _text(src, item, "id", path, problems)
            email = _text(src, item, "email", path, problems)
            if email and not _EMAIL.match(email):
                problems.append(Problem(src.at((*path, "email")), "invalid e-mail address", email))
            if email_key(email) in seen:
                problems.append(Problem(src.at((*path, "email")),
                                        f"two {product} users share e-mail {email}"))
            seen.add(email_key(email))
            status = item.get("status", "active")
            if status not in ("active", "inactive"):
                problems.append(Problem(src.at((*path, "status")), "invalid status",
                                        repr(status), "active or inactive"))
                status = "inactive"
            finance.append(FinanceUser(product, uid, email,
                                       _text(src, item, "name", path, problems, False) or email,
                                       _text(src, item, "role", path, problems), cast(Any, status),
                                       _texts(src, item, "locations", path, problems),
                                       frozenset(_texts(src, item, "assigned_customers", path,
                                                        problems))))
    finance_emails = {email_key(f.email) for f in finance}
    integ: list[IntegrationUser] = []
    for path, item in items("integration_users"):
        crm_id = _text(src, item, "crm_user", path, problems)
        if crm_id and crm_id not in crm:
            problems.append(Problem(src.at((*path, "crm_user")), "unknown CRM user", crm_id,
                                    "an id listed under crm_users"))
        elif crm_id and email_key(crm[crm_id].email) in finance_emails:
            problems.append(Problem(src.at((*path, "crm_user")),
                                    "a finance user cannot be an integration user", crm_id))
        integ.append(IntegrationUser(crm_id, _text(src, item, "id", path, problems)))
    if policy is not None and not problems:
        if org != policy.org_id:
            problems.append(Problem(src.at(("org",)), "the policy given is another "
                                    "organization's", org, policy.org_id))
        for v in check(policy, finance, integ):
            where = src.at((v.key,) if v.index is None else (v.key, v.index, v.field))
            problems.append(Problem(where, v.message, v.found, v.expected))
    if problems:
        raise PolicyError(problems)
    return DirectoryFile(org, tuple(crm.values()), tuple(finance), tuple(integ))


def read(path: Path, policy: DirectoryPolicy | None = None) -> DirectoryFile:
    """Read and validate a directory file (against the organization's policy when given)."""
    return parse(load(path, str(path)), policy)
