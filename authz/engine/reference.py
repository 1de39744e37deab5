"""The reference policy view: every question answered by Casbin's own `enforce`.

The index (`authz.engine.index`) answers grants, field access and approvers with dict
lookups; this view asks Casbin the same questions against the same compiled policy, so
differential tests and the benchmark can run `decide` over both and compare. It is slow
by design (enforce scans the policy) and is never used to serve decisions.

To make the comparison meaningful the reference does not trust the roles `decide`
resolved: it loads the compiled CSV with Casbin's stock FileAdapter and links each
directory user to their roles with `g` lines, then asks as the user's subject, so
Casbin's role graph decides which roles count. Finance users are `user:<email>`
(the subject named approvers already have); integration users get a subject of their
own, linked to the integration-user set and never to an e-mail approver.

`filtered=True` keeps the answers but narrows each enforce to the policy lines whose
key fields equal the request's (Casbin's FastPolicy filter, applied to every policy
type): the matchers require those fields to be equal, so no line that could match is
skipped. It makes enforce fast enough for a 100,000-request differential run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import casbin
from casbin.model import FastPolicy, Model
from casbin.persist.adapters import FileAdapter

from authz import catalog
from authz.decision import CheckRequest
from authz.directory import CrmUser, DirectorySnapshot
from authz.policy.compiler import INTEGRATION_ROLE, MODEL_CONF, approver_key, user_subject

#: Which request fields key each policy type's lines (positions in both r and p).
_KEYS: dict[str, tuple[int, ...]] = {"p": (1, 2, 3), "p2": (1, 2, 3), "p3": (1, 2, 3, 4),
                                     "p4": (0, 1, 2)}
#: Field access asked strongest first: the first Casbin allows is the user's access.
_ACCESS_ORDER = tuple(reversed(catalog.FIELD_ACCESS))


def integration_subject(crm_user_id: str) -> str:
    """Casbin subject of an integration user (never an e-mail: they approve nothing by name)."""
    return f"integration:{crm_user_id}"


@dataclass(frozen=True, slots=True)
class Match:
    """The policy line Casbin matched, in the index's `p, ...` form."""

    line: str


def user_links(snap: DirectorySnapshot, products: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Subject -> roles for every active directory user: the `g` lines the reference adds."""
    links: dict[str, tuple[str, ...]] = {}
    for crm in snap.crm_users.values():
        if crm.status != "active":
            continue
        subject, roles = _subject_roles(snap, crm, products)
        if roles:
            links[subject] = roles
    return links


def _subject_roles(snap: DirectorySnapshot, crm: CrmUser, products: Sequence[str]
                   ) -> tuple[str, tuple[str, ...]]:
    finance = {p: f for p, f in snap.finance_users(crm).items() if p in products}
    if finance:
        roles = tuple(f"{p}:{f.role_id}" for p, f in finance.items() if f.status == "active")
        # Approvers named by their product user id (Books ids kept): the user holds that
        # subject too, so Casbin's g links decide it as they decide roles.
        named = tuple(user_subject(approver_key(p, f.user_id)) for p, f in finance.items()
                      if f.status == "active")
        return user_subject(crm.email), (roles + named if roles else ())
    if crm.id in snap.integration_users:
        return integration_subject(crm.id), (INTEGRATION_ROLE,)
    return integration_subject(crm.id), ()


class ReferenceView:
    """A PolicyView over one organization's compiled policy, answered by `enforce`.

    Used as is, it asks with the role subjects `decide` passes (and, for approvers, the
    e-mail's user subject, whose `g` links count as that user's roles); `for_request`
    gives a view that asks as the requesting user's own subject only.
    """

    def __init__(self, enforcer: casbin.Enforcer, manifest: dict[str, Any],
                 snap: DirectorySnapshot, filtered: bool = False) -> None:
        self.enforcer = enforcer
        self.manifest = manifest
        self.snap = snap
        self.products = tuple(manifest["products"])
        self.filtered = filtered
        self._ctx = {n: enforcer.new_enforce_context(n) for n in ("2", "3", "4")}
        enforcer.get_role_manager().add_matching_func(None)  # plain names; linear build
        rules = [[sub, role] for sub, roles in user_links(snap, self.products).items()
                 for role in roles]
        if rules:
            enforcer.add_named_grouping_policies("g", rules)
        if filtered:
            for ptype, order in _KEYS.items():
                ast = enforcer.model.model["p"][ptype]
                fast = FastPolicy(order)
                for rule in ast.policy:
                    fast.append(rule)
                ast.policy = fast

    @classmethod
    def load(cls, csv_path: Path, manifest: dict[str, Any] | Path, snap: DirectorySnapshot,
             filtered: bool = False) -> ReferenceView:
        """Build from compiled files with Casbin's stock model loader and FileAdapter."""
        data = (json.loads(manifest.read_text(encoding="utf-8")) if isinstance(manifest, Path)
                else manifest)
        model = Model()
        model.load_model_from_text(MODEL_CONF)
        return cls(casbin.Enforcer(model, FileAdapter(str(csv_path))), data, snap, filtered)

    # -- Casbin --------------------------------------------------------------------------

    @contextmanager
    def _only(self, ptype: str, rvals: Sequence[str]) -> Iterator[None]:
        if not self.filtered:
            yield
            return
        policy = self.enforcer.model.model["p"][ptype].policy
        policy.apply_filter(*(rvals[i] for i in _KEYS[ptype]))
        try:
            yield
        finally:
            policy.clear_filter()

    def enforce(self, ptype: str, *rvals: str) -> tuple[bool, list[str]]:
        """Casbin's answer and the line it matched, for one policy type."""
        with self._only(ptype, rvals):
            if ptype == "p":
                ok, rule = self.enforcer.enforce_ex(*rvals)
            else:
                ok, rule = self.enforcer.enforce_ex(self._ctx[ptype[1:]], *rvals)
        return bool(ok), list(rule)

    def blocked(self, product: str, module: str, action: str) -> bool:
        """Whether the action is blocked until approval (r4/p4)."""
        return self.enforce("p4", product, module, action)[0]

    def subjects_for(self, user: str) -> tuple[str, ...] | None:
        """The Casbin subject a directory user asks as, or None when they have none."""
        crm = self.snap.crm_user(user)
        if crm is None:
            return None
        return (_subject_roles(self.snap, crm, self.products)[0],)

    def for_request(self, req: CheckRequest) -> PolicyViewLike:
        """A view that answers as the requesting user's subject (self when unknown)."""
        subjects = self.subjects_for(req.user)
        return self if subjects is None else _SubjectView(self, subjects)

    # -- PolicyView, by role subjects ----------------------------------------------------

    def grant(self, roles: tuple[str, ...], product: str, module: str, action: str,
              assigned: bool, channel: str) -> Match | None:
        return self._grant(roles, product, module, action, assigned, channel)

    def masks(self, roles: tuple[str, ...], product: str, module: str
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self._masks(roles, product, module)

    def is_approver(self, roles: tuple[str, ...], email: str, product: str, module: str,
                    flow: str, level: int) -> bool:
        subjects = (user_subject(email), *roles) if email else roles
        return self._is_approver(subjects, product, module, flow, level)

    def is_named_approver(self, email: str, product: str, module: str, flow: str,
                          level: int) -> bool:
        """A p3 line naming the user's own subject (Casbin's policy API, not the role
        graph: approving through a role is `is_approver`)."""
        return bool(email) and bool(self.enforcer.has_named_policy(
            "p3", user_subject(email), product, module, flow, str(level)))

    def _grant(self, subjects: Sequence[str], product: str, module: str, action: str,
               assigned: bool, channel: str) -> Match | None:
        for sub in subjects:
            ok, rule = self.enforce("p", sub, product, module, action,
                                    "yes" if assigned else "no", channel)
            if ok:
                return Match("p, " + ", ".join(rule))
        return None

    def _masks(self, subjects: Sequence[str], product: str, module: str
               ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        hidden: list[str] = []
        read_only: list[str] = []
        for name in self.manifest["fields"].get(f"{product}/{module}", ()):
            access = next((a for a in _ACCESS_ORDER for sub in subjects
                           if self.enforce("p2", sub, product, module, name, a)[0]), None)
            if access == "hidden":
                hidden.append(name)
            elif access == "read_only":
                read_only.append(name)
        return tuple(sorted(hidden)), tuple(sorted(read_only))

    def _is_approver(self, subjects: Sequence[str], product: str, module: str, flow: str,
                     level: int) -> bool:
        return any(self.enforce("p3", sub, product, module, flow, str(level))[0]
                   for sub in subjects)


class _SubjectView:
    """The reference bound to one user's subject: roles come from Casbin's `g` links."""

    def __init__(self, ref: ReferenceView, subjects: tuple[str, ...]) -> None:
        self.ref = ref
        self.subjects = subjects

    def grant(self, roles: tuple[str, ...], product: str, module: str, action: str,
              assigned: bool, channel: str) -> Match | None:
        return self.ref._grant(self.subjects, product, module, action, assigned, channel)

    def masks(self, roles: tuple[str, ...], product: str, module: str
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.ref._masks(self.subjects, product, module)

    def is_approver(self, roles: tuple[str, ...], email: str, product: str, module: str,
                    flow: str, level: int) -> bool:
        return self.ref._is_approver(self.subjects, product, module, flow, level)

    def is_named_approver(self, email: str, product: str, module: str, flow: str,
                          level: int) -> bool:
        return self.ref.is_named_approver(email, product, module, flow, level)


PolicyViewLike = ReferenceView | _SubjectView
