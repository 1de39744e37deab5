"""Who a CRM user acts as in the finance suite (DOMAIN.md §2, §4 step 2)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from authz import catalog
from authz.decision import Identity, IdentityKind, Reason
from authz.directory import CrmUser, DirectorySnapshot, FinanceUser
from authz.engine.index import OrgIndex
from authz.policy.compiler import INTEGRATION_ROLE


@dataclass(frozen=True, slots=True)
class Resolved:
    """The identity, or why there is none (reason and message set, kind NONE)."""

    identity: Identity
    crm: CrmUser | None
    finance: dict[str, FinanceUser]  # active accounts in connected products
    reason: Reason | None = None
    message: str = ""
    label: str = ""  # how decisions name the identity's roles (`role_label`)
    located: bool = False  # a finance account is limited to locations
    # the index it was resolved with (a cache entry is good for that index only)
    org: object = field(default=None, compare=False, repr=False)


#: Role sets by value: users with the same roles, in any organization, share one tuple of
#: interned names (the index's own keys), which stays in the CPU's caches and compares by
#: identity in the index's lookups. Bounded: emptied when full (costs sharing only).
_ROLE_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
_ROLE_SETS_MAX = 10_000


def _role_set(roles: tuple[str, ...]) -> tuple[str, ...]:
    known = _ROLE_SETS.get(roles)
    if known is not None:
        return known
    if len(_ROLE_SETS) >= _ROLE_SETS_MAX:
        _ROLE_SETS.clear()
    _ROLE_SETS[roles] = roles
    return roles


def role_label(org: OrgIndex, roles: tuple[str, ...]) -> str:
    """How decisions name a set of roles ("role Staff (books)"), kept per organization."""
    label = org.labels.get(roles)
    if label is None:
        label = org.labels[roles] = _role_label(org, roles)
    return label


def _role_label(org: OrgIndex, roles: tuple[str, ...]) -> str:
    if roles == (INTEGRATION_ROLE,):
        return "the integration-user permission set"
    names = [f"{org.role_names.get(r, r)} ({r.split(':', 1)[0]})" for r in roles]
    return ("role " if len(names) == 1 else "roles ") + " and ".join(names)


#: Entries one snapshot keeps beyond its own user count (keys of unknown users included),
#: so that callers naming random users cannot grow a snapshot without bound.
_CACHE_SLACK = 1024


def resolve_cached(org: OrgIndex, snap: DirectorySnapshot, user: str) -> Resolved:
    """`resolve`, remembered on the snapshot per user key (the decision hot path).

    An entry also names the index it was resolved with (products and the role graph
    come from the policy), so a policy reload is a miss, never a stale identity. Plain
    dict operations: safe to share between threads under the GIL.
    """
    cache = snap.resolved
    hit: Resolved | None = cache.get(user)  # type: ignore[assignment]  # (no cast() call)
    if hit is not None and hit.org is org:
        return hit
    resolved = resolve(org, snap, user)
    if len(cache) >= len(snap.crm_users) + _CACHE_SLACK:
        cache.clear()
    cache[user] = resolved
    return resolved


def resolve(org: OrgIndex, snap: DirectorySnapshot, user: str) -> Resolved:
    """Match the CRM user to finance users by e-mail, else to their integration user."""
    crm = snap.crm_user(user)
    if crm is None:
        return Resolved(Identity(IdentityKind.NONE), None, {}, Reason.USER_UNKNOWN,
                        f"no CRM user '{user}' in the directory", org=org)
    none = Identity(kind=IdentityKind.NONE, crm_user_id=crm.id, email=crm.email,
                    display_name=crm.name)
    if crm.status != "active":
        return Resolved(none, crm, {}, Reason.CRM_USER_DISABLED, f"CRM user {crm.id} is disabled",
                        org=org)
    finance = {p: f for p, f in snap.finance_users(crm).items() if p in org.products}
    if finance:
        active = {p: f for p, f in finance.items() if f.status == "active"}
        if not active:
            return Resolved(none, crm, {}, Reason.FINANCE_USER_INACTIVE,
                            f"{crm.email} is inactive in " + " and ".join(sorted(finance)),
                            org=org)
        books = active.get(catalog.BOOKS)
        subs = active.get(catalog.SUBSCRIPTIONS)
        identity = Identity(
            kind=IdentityKind.FINANCE_USER,
            crm_user_id=crm.id,
            email=crm.email,
            display_name=(books or subs or crm).name,
            books_user_id=books.user_id if books else "",
            subscriptions_user_id=subs.user_id if subs else "",
            roles=_role_set(org.roles_of(tuple(sys.intern(f"{p}:{f.role_id}")
                                               for p, f in active.items()))),
        )
        return Resolved(identity, crm, active, label=role_label(org, identity.roles),
                        located=any(f.locations for f in active.values()), org=org)
    integ = snap.integration_users.get(crm.id)
    if integ is not None:
        identity = Identity(kind=IdentityKind.INTEGRATION_USER, crm_user_id=crm.id,
                            email=crm.email, display_name=crm.name,
                            integration_user_id=integ.integration_user_id,
                            roles=(INTEGRATION_ROLE,))
        return Resolved(identity, crm, {}, label=role_label(org, identity.roles), org=org)
    return Resolved(none, crm, {}, Reason.NOT_MIGRATED,
                    f"CRM user {crm.id} is neither a licensed finance user nor a migrated "
                    "integration user", org=org)
