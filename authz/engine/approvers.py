"""Who approves at a level (by role, e-mail or product user id) and how a decision
names an approver to a person."""

from __future__ import annotations

from typing import Protocol

from authz import catalog
from authz.decision import (
    Identity,
)
from authz.directory import DirectorySnapshot, FinanceUser
from authz.policy.compiler import approver_key


class PolicyView(Protocol):
    """The questions a decision asks of an organization's Casbin policy."""

    def grant(self, roles: tuple[str, ...], product: str, module: str, action: str,
              assigned: bool, channel: str) -> object | None: ...

    def masks(self, roles: tuple[str, ...], product: str, module: str
              ) -> tuple[tuple[str, ...], tuple[str, ...]]: ...

    def is_approver(self, roles: tuple[str, ...], email: str, product: str, module: str,
                    flow: str, level: int) -> bool: ...

    def is_named_approver(self, email: str, product: str, module: str, flow: str,
                          level: int) -> bool: ...


def approves(v: PolicyView, roles: tuple[str, ...], email: str, uid: str,
             product: str, module: str, flow: str, level: int) -> bool:
    """Whether the user approves at this level: by role, by e-mail, or named by `uid`, their
    user id in the product (importing from Books keeps Books user ids as approvers' ids)."""
    if v.is_approver(roles, email, product, module, flow, level):
        return True
    return bool(uid) and v.is_approver((), approver_key(product, uid), product, module, flow,
                                       level)


def is_named(v: PolicyView, email: str, uid: str, product: str, module: str, flow: str,
             level: int) -> bool:
    """Whether the user is named at this level as a person (by e-mail, or by `uid`, their
    user id in the product), not through a role."""
    return (bool(email) and v.is_named_approver(email, product, module, flow, level)) or (
        bool(uid) and v.is_named_approver(approver_key(product, uid), product, module, flow,
                                          level))


def _uid(identity: Identity, product: str) -> str:
    if product == catalog.BOOKS:
        return identity.books_user_id
    return identity.subscriptions_user_id if product == catalog.SUBSCRIPTIONS else ""


def _named(snap: DirectorySnapshot, user: str) -> FinanceUser | None:
    product, _, uid = user.partition(":")
    return None if "@" in user else snap.finance_user_by_id(product, uid)


def _user_label(snap: DirectorySnapshot, user: str) -> str:
    """An approver as a person reads it: the e-mail, or the name behind a product user id."""
    if "@" in user:
        return user
    product, _, uid = user.partition(":")
    fin = _named(snap, user)
    return f"{fin.name} ({product} user {uid})" if fin else f"{product} user {uid}"


def _user_email(snap: DirectorySnapshot, user: str) -> str:
    fin = _named(snap, user)
    return fin.email if fin is not None else user
