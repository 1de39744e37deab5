"""A directory checked against its organization's policy, before anything is imported.

A directory that names a role the policy does not know, a product the organization has
not connected, or more integration users than the quota imports "cleanly" and then
every decision for those users is silently denied (issue 11 item 8, issue 12 item 2).
The same check runs for directory files (`authz directory import`, errors at
file:line) and for the ImportDirectory RPC (errors naming the request field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from authz import catalog
from authz.directory import FinanceUser, IntegrationUser
from authz.migration.plan import DEFAULT_QUOTA

#: The key each product's users are listed under, in files and in ImportDirectoryRequest.
USERS_KEY = {catalog.BOOKS: "books_users", catalog.SUBSCRIPTIONS: "subscriptions_users"}


@dataclass(frozen=True, slots=True)
class DirectoryPolicy:
    """What a directory must agree with: the organization's products, roles and quota."""

    org_id: str
    products: tuple[str, ...]
    roles: Mapping[str, Mapping[str, str]]  # product -> role id -> role name
    integration_user_quota: int = DEFAULT_QUOTA

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, object]) -> DirectoryPolicy:
        """From a compiled organization manifest (`generated/orgs/<org>.json`)."""
        roles: dict[str, dict[str, str]] = {}
        raw = manifest.get("roles")
        for key, info in (raw.items() if isinstance(raw, dict) else ()):
            product, _, role_id = str(key).partition(":")
            name = info.get("name", role_id) if isinstance(info, dict) else role_id
            roles.setdefault(product, {})[role_id] = str(name)
        products = manifest.get("products")
        quota = manifest.get("integration_user_quota", DEFAULT_QUOTA)
        return cls(str(manifest.get("org_id", "")),
                   tuple(str(p) for p in products) if isinstance(products, list) else (),
                   roles, quota if isinstance(quota, int) else DEFAULT_QUOTA)


@dataclass(frozen=True, slots=True)
class Violation:
    """One disagreement: where (list key, item index, field), what was found, what fits."""

    key: str
    index: int | None
    field: str
    message: str
    found: str = ""
    expected: str = ""

    def path(self, field_names: Mapping[str, str] | None = None) -> str:
        """The request path, e.g. `books_users[3].role_id` (fields renamed for the RPC)."""
        name = (field_names or {}).get(self.field, self.field)
        at = self.key if self.index is None else f"{self.key}[{self.index}]"
        return f"{at}.{name}" if name else at

    def describe(self) -> str:
        text = self.message
        if self.found:
            text += f" (found {self.found}" + (f"; expected {self.expected})" if self.expected
                                               else ")")
        return text


def check(policy: DirectoryPolicy, finance: Sequence[FinanceUser],
          integration: Sequence[IntegrationUser]) -> list[Violation]:
    """Every way the users disagree with the policy; empty when they fit.

    `finance` is in request order (Books users, then Subscriptions users), so that a
    user's position within its product's list names it. Quota here is the policy's; the
    store checks the effective quota (an operator's raise) and existing users again.
    """
    out: list[Violation] = []
    position: dict[str, int] = {}
    for user in finance:
        i = position.get(user.product, 0)
        position[user.product] = i + 1
        key = USERS_KEY.get(user.product, f"{user.product}_users")
        who = f"{user.product} user {user.user_id} ({user.email})"
        if user.product not in policy.products:
            out.append(Violation(key, i, "", f"{who}: organization {policy.org_id} does not "
                                 f"connect {user.product}", user.product,
                                 "one of: " + ", ".join(policy.products)))
            continue
        known = policy.roles.get(user.product, {})
        if user.role_id not in known:
            out.append(Violation(key, i, "role", f"{who}: unknown {user.product} role",
                                 repr(user.role_id), "one of: " + ", ".join(
                                     f"{rid} ({name})" for rid, name in sorted(known.items()))))
    if len(integration) > policy.integration_user_quota:
        out.append(Violation("integration_users", None, "",
                             f"{len(integration)} integration users exceed organization "
                             f"{policy.org_id}'s quota of {policy.integration_user_quota}"))
    return out
