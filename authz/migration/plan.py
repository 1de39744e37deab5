"""Who migration affects, and who may become an integration user (DOMAIN.md §6).

Pure rules over a directory snapshot: the store applies them inside its transaction,
so the quota and eligibility are checked against what is committed, not a stale read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from authz.directory import DEFAULT_QUOTA as DEFAULT_QUOTA
from authz.directory import CrmUser, DirectorySnapshot, OrgMode

NOT_STARTED = OrgMode()  # no window recorded yet, not unified


class Ineligible(StrEnum):
    """Why a CRM user cannot become an integration user."""

    CRM_USER_DISABLED = "crm_user_disabled"
    INACTIVE_IN_BOOKS = "inactive_in_books"
    ALREADY_FINANCE_USER = "already_finance_user"
    ALREADY_INTEGRATION_USER = "already_integration_user"
    NO_EMAIL = "no_email"
    UNKNOWN_USER = "unknown_user"


MESSAGES = {
    Ineligible.CRM_USER_DISABLED: "disabled in the CRM",
    Ineligible.INACTIVE_IN_BOOKS: "a Books user, inactive in Books",
    Ineligible.ALREADY_FINANCE_USER: "already a licensed finance user; keeps their own role",
    Ineligible.ALREADY_INTEGRATION_USER: "already an integration user",
    Ineligible.NO_EMAIL: "has no e-mail address to match or to notify",
    Ineligible.UNKNOWN_USER: "no such CRM user in this organization",
}


@dataclass(frozen=True, slots=True)
class CommonUser:
    """A CRM user matched to finance users (active or not): keeps their own roles, and
    is never an integration-user candidate."""

    crm_user_id: str
    email: str
    roles: tuple[str, ...]  # active accounts' roles, e.g. ("books:staff", "subscriptions:admin")
    name: str = ""  # the Books user's name (the finance user's, when not in Books)
    books_user_id: str = ""
    books_status: str = ""  # active or inactive in Books; "" when not a Books user


@dataclass(frozen=True, slots=True)
class Candidate:
    """A CRM-only active user who can become an integration user."""

    crm_user_id: str
    email: str
    name: str
    usage: int  # finance operations in the usage window


@dataclass(frozen=True, slots=True)
class Excluded:
    crm_user_id: str
    reason: Ineligible

    @property
    def message(self) -> str:
        return MESSAGES[self.reason]


@dataclass(frozen=True, slots=True)
class Preview:
    org_id: str
    directory_revision: int
    common: tuple[CommonUser, ...]
    candidates: tuple[Candidate, ...]  # most active first
    excluded: tuple[Excluded, ...]
    integration_users: int
    quota: int
    mode: OrgMode = NOT_STARTED
    released: bool = True  # whether the phased release has reached the organization
    mode_reason: str = ""  # why it has not, when it has not

    @property
    def slots_left(self) -> int:
        return max(0, self.quota - self.integration_users)

    def status_line(self) -> str:
        """Where the organization stands, for the screen and the CLI."""
        if not self.released:
            return f"cannot migrate yet: {self.mode_reason or 'the release has not reached it'}"
        if self.mode.unified:
            return f"unified ({self.mode.unified_by})"
        if self.mode.deadline is not None:
            return f"legacy until saved; window open until {self.mode.deadline}"
        return "legacy until saved"


def eligibility(snap: DirectorySnapshot, user: CrmUser | None) -> Ineligible | None:
    """None when the user may become an integration user; else why not."""
    if user is None:
        return Ineligible.UNKNOWN_USER
    if user.status != "active":
        return Ineligible.CRM_USER_DISABLED
    if not user.email:
        return Ineligible.NO_EMAIL
    if user.id in snap.integration_users:
        return Ineligible.ALREADY_INTEGRATION_USER
    finance = snap.finance_users(user)
    if finance:
        if all(f.status != "active" for f in finance.values()):
            return Ineligible.INACTIVE_IN_BOOKS
        return Ineligible.ALREADY_FINANCE_USER
    return None


def _common(user: CrmUser, snap: DirectorySnapshot) -> CommonUser:
    finance = snap.finance_users(user)
    books = finance.get("books")
    first = books or next(iter(finance.values()))
    return CommonUser(user.id, user.email, tuple(
        f"{p}:{f.role_id}" for p, f in sorted(finance.items()) if f.status == "active"),
        first.name, books.user_id if books else "", books.status if books else "")


def preview(snap: DirectorySnapshot, quota: int = DEFAULT_QUOTA,
            usage: Mapping[str, int] | None = None, *, mode: OrgMode = NOT_STARTED,
            released: bool = True, mode_reason: str = "") -> Preview:
    """What the "Migrate users" screen shows: every CRM user matched to a finance user
    (inactive ones too) as common, the CRM-only users who could become integration users,
    and where the organization stands."""
    usage = usage or {}
    common: list[CommonUser] = []
    candidates: list[Candidate] = []
    excluded: list[Excluded] = []
    for user in sorted(snap.crm_users.values(), key=lambda u: u.id):
        reason = eligibility(snap, user)
        if reason is None:
            candidates.append(Candidate(user.id, user.email, user.name, usage.get(user.id, 0)))
            continue
        if reason in (Ineligible.ALREADY_FINANCE_USER, Ineligible.INACTIVE_IN_BOOKS):
            common.append(_common(user, snap))
        excluded.append(Excluded(user.id, reason))
    candidates.sort(key=lambda c: (-c.usage, c.crm_user_id))
    return Preview(snap.org_id, snap.revision, tuple(common), tuple(candidates), tuple(excluded),
                   len(snap.integration_users), quota, mode, released, mode_reason)


def automatic_selection(snap: DirectorySnapshot, quota: int, usage: Mapping[str, int],
                        min_usage: int = 1) -> list[str]:
    """After the window: candidates by use of the finance modules, most active first,
    within the slots left. Users who never used the finance modules are not added."""
    p = preview(snap, quota, usage)
    chosen = [c.crm_user_id for c in p.candidates if c.usage >= min_usage]
    return chosen[: p.slots_left]


def check_selection(user_ids: Iterable[str]) -> list[str]:
    """Duplicates in one request are an error, not a silent merge."""
    seen: set[str] = set()
    dups: list[str] = []
    for uid in user_ids:
        if uid in seen and uid not in dups:
            dups.append(uid)
        seen.add(uid)
    return dups
