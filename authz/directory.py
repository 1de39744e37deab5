"""The directory: who is who in an organization (data, kept in the store, not in git).

CRM users are matched to finance users by e-mail, case-insensitively. A snapshot is
immutable and carries the store revision it was read at, so a decision can say which
directory it saw and a caller can ask for read-your-writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

CrmStatus = Literal["active", "disabled"]
FinanceStatus = Literal["active", "inactive"]
DEFAULT_QUOTA = 1000  # integration users an organization may have unless raised (DOMAIN §6)


def email_key(email: str) -> str:
    """E-mail addresses match case-insensitively and ignoring surrounding blanks."""
    return email.strip().casefold()


@dataclass(frozen=True, slots=True)
class CrmUser:
    """A CRM user, as the CRM's users API describes them."""

    id: str
    email: str
    name: str
    status: CrmStatus = "active"
    is_admin: bool = False  # CRM organization administrator (may run migrations)


@dataclass(frozen=True, slots=True)
class FinanceUser:
    """A licensed user of one finance product (Books or Subscriptions)."""

    product: str
    user_id: str
    email: str
    name: str
    role_id: str  # the role's id in that product's policy, e.g. "staff"
    status: FinanceStatus = "active"
    locations: tuple[str, ...] = ()  # empty: all locations
    # Customers whose contact owner this user is (Books data): an "assigned customers
    # only" role acts on a record whose customer is among them (DOMAIN §3, §4.4).
    assigned_customers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class IntegrationUser:
    """A CRM-only user added through migration; acts with the integration-user set."""

    crm_user_id: str
    integration_user_id: str


WINDOW_MONTHS = 3


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later (the month's last day when it has no such day)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise ValueError(day)


@dataclass(frozen=True, slots=True)
class OrgMode:
    """Where an organization is in its move to the unified mode (DOMAIN.md §6), as the
    server recorded it in the store. Until it is unified it keeps the legacy behaviour:
    nobody is locked out during the window."""

    window_start: dt.date | None = None  # the day the phased release reached it
    unified_by: str = ""  # saved, window_ended, signup, import; "": not unified yet

    @property
    def unified(self) -> bool:
        return bool(self.unified_by)

    @property
    def deadline(self) -> dt.date | None:
        """The end of the three-month window (None: it has not started)."""
        return add_months(self.window_start, WINDOW_MONTHS) if self.window_start else None

    def legacy_reason(self) -> str:
        """Why an organization the release reached is still legacy."""
        if self.window_start is None:
            return "the migration window has not started: the server has not recorded the release"
        return (f"migration window open until {self.deadline}: the organization has not saved "
                "its migration")


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """An organization's directory at one store revision, indexed for lookups."""

    org_id: str
    revision: int = 0
    crm_users: dict[str, CrmUser] = field(default_factory=dict)  # by CRM user id
    crm_by_email: dict[str, CrmUser] = field(default_factory=dict)  # by email_key
    finance_by_email: dict[str, dict[str, FinanceUser]] = field(default_factory=dict)
    integration_users: dict[str, IntegrationUser] = field(default_factory=dict)  # by CRM id
    # The organization's migration state from the store; None for a directory held in
    # memory (policy test suites, benchmarks), which decides as unified.
    mode: OrgMode | None = None
    # by (product, user id): approvers named by id are shown by name. Built on first use
    # (`finance_user_by_id`): few organizations name approvers by id, and the table costs
    # about a tenth of a snapshot.
    finance_by_id: dict[tuple[str, str], FinanceUser] = field(default_factory=dict,
                                                             compare=False, repr=False)
    # Identities resolved against this snapshot, by the user key a request named (filled
    # by authz.engine.identity): a snapshot is immutable, so an entry stays right for its
    # lifetime and dies with it; resolving is a third of a decision otherwise.
    resolved: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        org_id: str,
        revision: int,
        crm_users: Iterable[CrmUser] = (),
        finance_users: Iterable[FinanceUser] = (),
        integration_users: Iterable[IntegrationUser] = (),
        mode: OrgMode | None = None,
    ) -> DirectorySnapshot:
        """Index plain lists of users.

        E-mail keys are held once per snapshot (the CRM and finance rows of one person
        share one), and are the address itself when it is already in key form."""
        crm = {u.id: u for u in crm_users}
        keys: dict[str, str] = {}
        by_email = {}
        for u in crm.values():
            if u.email:
                k = email_key(u.email)
                k = keys.setdefault(k, u.email if k == u.email else k)
                by_email[k] = u
        finance: dict[str, dict[str, FinanceUser]] = {}
        for f in finance_users:
            k = email_key(f.email)
            k = keys.setdefault(k, f.email if k == f.email else k)
            finance.setdefault(k, {})[f.product] = f
        integ = {i.crm_user_id: i for i in integration_users}
        return cls(org_id, revision, crm, by_email, finance, integ, mode)

    def finance_user_by_id(self, product: str, user_id: str) -> FinanceUser | None:
        """A finance user by product and user id."""
        by_id = self.finance_by_id
        if not by_id and self.finance_by_email:
            # Filled once; threads that race fill it with the same entries.
            by_id.update({(f.product, f.user_id): f for fs in self.finance_by_email.values()
                          for f in fs.values()})
        return by_id.get((product, user_id))

    def crm_user(self, key: str) -> CrmUser | None:
        """Find a CRM user by id or by e-mail."""
        user = self.crm_users.get(key)
        if user is None and "@" in key:
            user = self.crm_by_email.get(email_key(key))
        return user

    def finance_users(self, crm_user: CrmUser) -> dict[str, FinanceUser]:
        """The user's finance accounts by product (empty when they have none)."""
        if not crm_user.email:
            return {}
        return self.finance_by_email.get(email_key(crm_user.email), {})

    def finance_user_by_email(self, email: str) -> dict[str, FinanceUser]:
        return self.finance_by_email.get(email_key(email), {})
