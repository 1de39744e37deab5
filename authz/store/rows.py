"""Directory users as table rows: conversion both ways, and the diff an import writes.

An import reads the organization's current rows, compares them with the incoming users
and writes only the difference. That makes re-importing identical data a no-op (same
revision) and keeps a 3,000-user sync that changes one user down to one UPDATE.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from authz.directory import (
    DEFAULT_QUOTA,
    CrmStatus,
    CrmUser,
    FinanceStatus,
    FinanceUser,
    IntegrationUser,
    email_key,
)
from authz.errors import InvalidArgument
from authz.store import schema
from authz.store.migration_schema import integration_quotas, migration_job_items, migration_jobs

T = TypeVar("T")
Key = tuple[str, ...]
Values = dict[str, Any]


@dataclass(frozen=True)
class Spec(Generic[T]):
    """How one kind of user maps to its table: key columns, compared columns, converters."""

    table: sa.Table
    what: str  # for messages: "CRM user"
    keys: tuple[str, ...]
    to_row: Callable[[T], tuple[Key, Values]]
    from_row: Callable[[Key, Values], T]

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns an import compares and overwrites (not the key, not insert-only)."""
        skip = {"org_id", *self.keys, *INSERT_ONLY}
        return tuple(c.name for c in self.table.columns if c.name not in skip)

    def index(self, items: Iterable[T]) -> dict[Key, Values]:
        """Rows by key; the same key twice in one import is the caller's mistake."""
        out: dict[Key, Values] = {}
        for item in items:
            key, values = self.to_row(item)
            self._check(key, values)
            if key in out:
                raise InvalidArgument(self.table.name, f"{self.what} {'/'.join(key)} listed twice")
            out[key] = values
        return out

    def _check(self, key: Key, values: Values) -> None:
        """Reject what the database would (lengths, statuses), the same way on both."""
        label = f"{self.what} {'/'.join(key)}"
        if not all(key):
            raise InvalidArgument(self.table.name, f"{label}: every id must be non-empty")
        for name, value in (*zip(self.keys, key, strict=True), *values.items()):
            length = getattr(self.table.c[name].type, "length", None)
            if isinstance(value, str) and length is not None and len(value) > length:
                raise InvalidArgument(self.table.name, f"{label}: {name} longer than {length}")
        status = values.get("status")
        if status is not None and status not in STATUSES[self.table.name]:
            raise InvalidArgument(self.table.name, f"{label}: status {status!r} is not one of "
                                  f"{', '.join(STATUSES[self.table.name])}")

    def read(self, conn: Connection, org_id: str) -> dict[Key, Values]:
        t = self.table
        names = self.columns
        cols = [t.c[k] for k in self.keys] + [t.c[c] for c in names]
        rows = conn.execute(sa.select(*cols).where(t.c.org_id == org_id)).all()
        n = len(self.keys)
        return {tuple(r[:n]): dict(zip(names, r[n:], strict=True)) for r in rows}


STATUSES = {"crm_users": ("active", "disabled"), "finance_users": ("active", "inactive")}
# Columns written when a row is created and never compared or overwritten by an import.
INSERT_ONLY = ("created_at", "permission_set_version")


def _crm_row(u: CrmUser) -> tuple[Key, Values]:
    return (u.id,), {"email": u.email, "email_key": email_key(u.email), "name": u.name,
                     "status": u.status, "is_admin": bool(u.is_admin)}


def _crm_user(key: Key, v: Values) -> CrmUser:
    status: CrmStatus = "disabled" if v["status"] == "disabled" else "active"
    return CrmUser(key[0], v["email"], v["name"], status, bool(v["is_admin"]))


def _finance_row(u: FinanceUser) -> tuple[Key, Values]:
    return (u.product, u.user_id), {
        "email": u.email, "email_key": email_key(u.email), "name": u.name, "role_id": u.role_id,
        "status": u.status, "locations": json.dumps(list(u.locations)),
        "assigned_customers": json.dumps(sorted(u.assigned_customers)),
    }


def _finance_user(key: Key, v: Values) -> FinanceUser:
    status: FinanceStatus = "inactive" if v["status"] == "inactive" else "active"
    customers = json.loads(v["assigned_customers"])
    # Product and role ids repeat across users and organizations: one shared copy each;
    # most users have no assigned customers: one shared empty set (216 bytes each else).
    return FinanceUser(sys.intern(key[0]), key[1], v["email"], v["name"],
                       sys.intern(v["role_id"]), status, tuple(json.loads(v["locations"])),
                       frozenset(customers) if customers else _NO_CUSTOMERS)


_NO_CUSTOMERS: frozenset[str] = frozenset()


def _integration_row(u: IntegrationUser) -> tuple[Key, Values]:
    return (u.crm_user_id,), {"integration_user_id": u.integration_user_id}


def _integration_user(key: Key, v: Values) -> IntegrationUser:
    return IntegrationUser(key[0], v["integration_user_id"])


CRM = Spec[CrmUser](schema.crm_users, "CRM user", ("id",), _crm_row, _crm_user)
FINANCE = Spec[FinanceUser](schema.finance_users, "finance user", ("product", "user_id"),
                            _finance_row, _finance_user)
INTEGRATION = Spec[IntegrationUser](schema.integration_users, "integration user", ("crm_user_id",),
                                    _integration_row, _integration_user)


@dataclass
class Diff:
    """What one table needs so that it holds `merged`."""

    inserts: dict[Key, Values] = field(default_factory=dict)
    updates: dict[Key, Values] = field(default_factory=dict)
    deletes: list[Key] = field(default_factory=list)
    merged: dict[Key, Values] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.deletes)


def diff(existing: Mapping[Key, Values], incoming: Mapping[Key, Values], replace: bool) -> Diff:
    """Upsert `incoming` over `existing`; with `replace`, rows not incoming are deleted."""
    d = Diff(merged={} if replace else dict(existing))
    for key, values in incoming.items():
        old = existing.get(key)
        if old is None:
            d.inserts[key] = values
        elif old != values:
            d.updates[key] = values
        d.merged[key] = values
    if replace:
        d.deletes = [k for k in existing if k not in incoming]
    return d


def apply(conn: Connection, spec: Spec[Any], org_id: str, d: Diff, extra: Values | None = None) -> None:
    """Write a diff with one executemany per kind of change (deletes first)."""
    t = spec.table
    key_match = sa.and_(t.c.org_id == sa.bindparam("k_org_id"),
                        *(t.c[k] == sa.bindparam(f"k_{k}") for k in spec.keys))

    def keyed(key: Key) -> Values:
        return {"k_org_id": org_id, **{f"k_{k}": v for k, v in zip(spec.keys, key, strict=True)}}

    if d.deletes:
        conn.execute(t.delete().where(key_match), [keyed(k) for k in d.deletes])
    if d.updates:
        stmt = t.update().where(key_match).values({c: sa.bindparam(c) for c in spec.columns})
        conn.execute(stmt, [{**keyed(k), **v} for k, v in d.updates.items()])
    if d.inserts:
        conn.execute(t.insert(), [
            {"org_id": org_id, **dict(zip(spec.keys, k, strict=True)), **v, **(extra or {})}
            for k, v in d.inserts.items()
        ])


def check_integration_users(crm: Mapping[Key, Values], finance: Mapping[Key, Values],
                            integration: Mapping[Key, Values], named: Iterable[Key]) -> None:
    """Integration users named in this import must be CRM users with no finance licence
    (DOMAIN §6: users who are already Books users cannot be added as integration users).
    `crm`, `finance` and `integration` are the organization's rows as the import leaves them."""
    owners: dict[str, str] = {}
    for (crm_user_id,), v in sorted(integration.items()):
        other = owners.setdefault(v["integration_user_id"], crm_user_id)
        if other != crm_user_id:
            raise InvalidArgument("integration_users", f"integration user id "
                                  f"'{v['integration_user_id']}' given to both '{other}' and '{crm_user_id}'")
    finance_keys = {v["email_key"] for v in finance.values() if v["email_key"]}
    for (crm_user_id,) in named:
        user = crm.get((crm_user_id,))
        if user is None:
            raise InvalidArgument("integration_users",
                                  f"CRM user '{crm_user_id}' does not exist in this organization")
        if user["email_key"] and user["email_key"] in finance_keys:
            raise InvalidArgument(
                "integration_users",
                f"CRM user '{crm_user_id}' ({user['email']}) is a finance user and cannot "
                "be an integration user",
            )


def pending_integration_users(conn: Connection, org_id: str) -> set[str]:
    """CRM users pending in unfinished migration jobs: their quota slots are taken."""
    i, j = migration_job_items, migration_jobs
    return set(conn.execute(
        sa.select(i.c.crm_user_id).join(j, j.c.job_id == i.c.job_id)
        .where(j.c.org_id == org_id, j.c.state != "done", i.c.state == "pending")).scalars())


def check_quota(conn: Connection, org_id: str, policy_quota: object,
                integration: Mapping[Key, Values]) -> None:
    """An import may not take the organization past its integration-user quota (DOMAIN §6:
    1,000 unless raised): the operator's raise in the store, else the policy's. Users
    pending in unfinished migration jobs hold slots too, as they do for Migrate."""
    raised = conn.execute(sa.select(integration_quotas.c.quota)
                          .where(integration_quotas.c.org_id == org_id)).scalar()
    quota = int(raised) if raised is not None else (
        policy_quota if isinstance(policy_quota, int) else DEFAULT_QUOTA)
    pending = pending_integration_users(conn, org_id)
    used = len(integration) + len({u for u in pending if (u,) not in integration})
    if used > quota:
        raise InvalidArgument("integration_users", f"the import would leave {used} integration "
                              f"users (pending migrations included) over organization {org_id}'s "
                              f"quota of {quota}; nothing imported")
