"""Automatic migration after the window, and sign-ups in unified mode (no window)."""

from __future__ import annotations

import datetime as dt

from authz.directory import CrmUser
from authz.migration.auto import auto_migrate, sign_up
from authz.store import Store
from authz.store.jobs import run_job
from authz.store.migration import MigrationStore, OrgSettings

from .conftest import ORG


def _ms(store: Store) -> MigrationStore:
    return MigrationStore(store, lambda o: OrgSettings(quota=3, unified_since=dt.date(2025, 6, 1)),
                          usage=lambda o: {"u0005": 9, "u0002": 4, "u0007": 1, "u0009": 6, "bob": 50})


def test_after_the_deadline_the_most_active_users_are_added_within_the_quota(seeded: Store) -> None:
    ms = _ms(seeded)
    (early,) = auto_migrate(ms, [ORG], today=dt.date(2025, 8, 31))
    assert early.skipped == "window open until 2025-09-01" and early.job is None
    (dry,) = auto_migrate(ms, [ORG], today=dt.date(2025, 9, 1), dry_run=True)
    assert dry.selected == ("u0005", "u0009", "u0002") and dry.job is None  # bob is a Books user
    assert ms.unfinished() == []
    (r,) = auto_migrate(ms, [ORG], today=dt.date(2025, 9, 1))
    assert r.job is not None
    job = run_job(ms, ORG, r.job.job_id)
    assert job.kind == "auto" and job.done == 3
    (again,) = auto_migrate(ms, [ORG], today=dt.date(2025, 9, 1))
    assert again.job is None and "no slot left" in again.skipped


def test_a_sign_up_has_integration_users_at_set_up_and_no_window(store: Store) -> None:
    ms = _ms(store)
    job = sign_up(ms, "newco", CrmUser("boss", "boss@new.example", "Boss"),
                  [CrmUser("ann", "ann@new.example", "Ann")], ["ann"])
    assert job is not None and job.done == 1
    assert "ann" in store.snapshot("newco", job.revision).integration_users
    (r,) = auto_migrate(ms, ["newco"], today=dt.date(2030, 1, 1))
    assert r.skipped == "signed up in unified mode: no window"
