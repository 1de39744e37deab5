"""The window (DOMAIN §6 revised): it starts when the release reaches the organization
(recorded by the server in the store), the organization stays legacy until its migration
is saved or the window ends, then automatic migration by finance usage; sign-ups are
unified with no window."""

from __future__ import annotations

import datetime as dt

import pytest

from authz.directory import CrmUser
from authz.errors import FailedPrecondition
from authz.migration.auto import auto_migrate, sign_up
from authz.migration.runner import run_job
from authz.migration.service import MigrationStore
from authz.migration.settings import OrgSettings
from authz.store import Store

from .conftest import ORG

USAGE = {"u0005": 9, "u0002": 4, "u0007": 1, "u0009": 6, "bob": 50}


def _ms(store: Store, released: bool = True) -> MigrationStore:
    mode = "unified" if released else "legacy"
    return MigrationStore(store, lambda o: OrgSettings(quota=3, effective_mode=mode,
                                                       mode_reason="not released to US enterprise"),
                          usage=lambda o: USAGE)


def test_after_the_deadline_the_most_active_users_are_added_within_the_quota(seeded: Store) -> None:
    ms = _ms(seeded)
    assert ms.record_release(ORG, dt.date(2025, 6, 1)).deadline == dt.date(2025, 9, 1)
    mode = seeded.snapshot(ORG).mode
    assert mode is not None and not mode.unified
    (early,) = auto_migrate(ms, [ORG], today=dt.date(2025, 8, 31))
    assert early.skipped == "window open until 2025-09-01" and early.job is None
    (dry,) = auto_migrate(ms, [ORG], today=dt.date(2025, 9, 1), dry_run=True)
    assert dry.selected == ("u0005", "u0009", "u0002") and dry.job is None  # bob is a Books user
    assert ms.unfinished() == [] and not ms.mode(ORG).unified
    (r,) = auto_migrate(ms, [ORG], today=dt.date(2025, 9, 1))
    assert r.job is not None
    job = run_job(ms, ORG, r.job.job_id)
    assert job.kind == "auto" and job.done == 3
    assert ms.mode(ORG).unified_by == "window_ended"
    assert seeded.snapshot(ORG, job.revision).mode.unified  # type: ignore[union-attr]
    (again,) = auto_migrate(ms, [ORG], today=dt.date(2025, 9, 1))
    assert again.job is None and again.skipped == "already unified (window_ended)"


def test_the_release_arriving_starts_a_window_with_no_migration_that_day(seeded: Store) -> None:
    ms = _ms(seeded)
    today = dt.date(2026, 11, 29)
    (r,) = auto_migrate(ms, [ORG], today=today)  # first sighting: the window starts today
    assert r.job is None and r.skipped == "window open until 2027-02-28"
    assert ms.mode(ORG).window_start == today and not ms.mode(ORG).unified
    later = ms.record_release(ORG, dt.date(2027, 1, 1))  # seen again: the start stays
    assert later.window_start == today


def test_saving_the_migration_makes_the_organization_unified(seeded: Store) -> None:
    ms = _ms(seeded)
    ms.record_release(ORG, dt.date(2026, 11, 1))
    job = ms.apply(ORG, "admin", ["u0001"], "save")
    assert ms.mode(ORG).unified_by == "saved"
    snap = seeded.snapshot(ORG, job.revision)
    assert snap.mode is not None and snap.mode.unified and snap.mode.window_start == dt.date(2026, 11, 1)


def test_an_ended_window_with_nobody_to_add_still_makes_the_organization_unified(
        seeded: Store) -> None:
    ms = MigrationStore(seeded, lambda o: OrgSettings(), usage=lambda o: {})
    ms.record_release(ORG, dt.date(2025, 1, 1))
    (r,) = auto_migrate(ms, [ORG], today=dt.date(2025, 4, 1))
    assert r.job is None and "the organization is unified" in r.skipped
    assert ms.mode(ORG).unified_by == "window_ended"


def test_migrate_before_the_release_is_refused_and_changes_nothing(seeded: Store) -> None:
    ms = _ms(seeded, released=False)
    rev = seeded.revision(ORG)
    with pytest.raises(FailedPrecondition) as err:
        ms.apply(ORG, "admin", ["u0001"], "early")
    assert "cannot migrate yet: not released to US enterprise" in str(err.value)
    assert seeded.revision(ORG) == rev and ms.unfinished() == [] and ms.mode(ORG).window_start is None
    (r,) = auto_migrate(ms, [ORG], today=dt.date(2030, 1, 1))
    assert r.skipped == "unified mode not available yet"
    with pytest.raises(FailedPrecondition):
        sign_up(ms, "newco", CrmUser("boss", "boss@new.example", "Boss"))


def test_a_sign_up_has_integration_users_at_set_up_and_no_window(store: Store) -> None:
    ms = _ms(store)
    job = sign_up(ms, "newco", CrmUser("boss", "boss@new.example", "Boss"),
                  [CrmUser("ann", "ann@new.example", "Ann")], ["ann"])
    assert job is not None and job.done == 1
    snap = store.snapshot("newco", job.revision)
    assert "ann" in snap.integration_users and snap.mode is not None and snap.mode.unified_by == "signup"
    (r,) = auto_migrate(ms, ["newco"], today=dt.date(2030, 1, 1))
    assert r.skipped == "signed up in unified mode: no window"
