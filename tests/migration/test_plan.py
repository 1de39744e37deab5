"""Migration rules over the example organization's directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from authz.directory import CrmUser, DirectorySnapshot, OrgMode
from authz.directory_file import read
from authz.migration.plan import (
    Ineligible,
    automatic_selection,
    check_selection,
    eligibility,
    preview,
)

DIRECTORY = Path(__file__).resolve().parents[2] / "authz/policies/orgs/acme-eu/tests/directory.yaml"


def snap() -> DirectorySnapshot:
    return read(DIRECTORY).snapshot(revision=7)


def test_preview_sorts_users_into_common_candidates_and_excluded() -> None:
    p = preview(snap(), quota=1000, usage={"u-noah": 12})
    common = {c.crm_user_id: c.roles for c in p.common}
    assert common["u-sam"] == ("books:sales_rep", "subscriptions:subscription_sales")
    assert common["u-anna"] == ("books:admin", "subscriptions:admin")
    assert [c.crm_user_id for c in p.candidates] == ["u-noah"]
    assert p.candidates[0].usage == 12
    reasons = {e.crm_user_id: e.reason for e in p.excluded}
    assert reasons["u-olga"] == Ineligible.CRM_USER_DISABLED
    assert reasons["u-ian"] == Ineligible.INACTIVE_IN_BOOKS
    assert reasons["u-ivy"] == Ineligible.ALREADY_INTEGRATION_USER
    assert reasons["u-sam"] == Ineligible.ALREADY_FINANCE_USER
    assert p.slots_left == 999 and p.directory_revision == 7


def test_books_users_can_never_become_integration_users() -> None:
    s = snap()
    assert eligibility(s, s.crm_user("u-fiona")) == Ineligible.ALREADY_FINANCE_USER
    assert eligibility(s, s.crm_user("u-noah")) is None
    assert eligibility(s, None) == Ineligible.UNKNOWN_USER


def test_users_without_email_are_excluded() -> None:
    s = DirectorySnapshot.build("o", 1, [CrmUser("u-x", "", "X")])
    assert preview(s).excluded[0].reason == Ineligible.NO_EMAIL


def test_automatic_selection_takes_the_most_active_within_the_slots() -> None:
    users = [CrmUser(f"u-{i}", f"u{i}@x.example", f"U{i}") for i in range(5)]
    s = DirectorySnapshot.build("o", 1, users)
    usage = {"u-0": 3, "u-1": 50, "u-2": 0, "u-3": 50, "u-4": 7}
    assert automatic_selection(s, quota=3, usage=usage) == ["u-1", "u-3", "u-4"]
    assert automatic_selection(s, quota=10, usage=usage) == ["u-1", "u-3", "u-4", "u-0"]


def test_duplicates_in_one_request_are_named() -> None:
    assert check_selection(["a", "b", "a", "c", "b", "a"]) == ["a", "b"]


def test_three_month_window() -> None:
    assert OrgMode(dt.date(2025, 6, 1)).deadline == dt.date(2025, 9, 1)
    assert OrgMode(dt.date(2025, 11, 30)).deadline == dt.date(2026, 2, 28)
    assert OrgMode().deadline is None


def test_every_matched_user_is_common_with_books_id_name_and_status() -> None:
    p = preview(snap())
    common = {c.crm_user_id: c for c in p.common}
    ian = common["u-ian"]  # matched to an inactive Books user: common, never a candidate
    assert (ian.books_user_id, ian.name, ian.books_status, ian.roles) == (
        "b-ian", "Ian Fuchs", "inactive", ())
    assert (common["u-sam"].books_user_id, common["u-sam"].books_status) == ("b-sam", "active")
    assert common["u-bea"].books_user_id == "" and common["u-bea"].name == "Bea Sommer"
    assert "u-ian" not in {c.crm_user_id for c in p.candidates}
