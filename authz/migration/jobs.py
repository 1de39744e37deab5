"""A migration job and its items, as recorded: state, progress, why a user was not
migrated."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from authz.migration import plan

OVER_QUOTA = "over_quota"
JOB_FAILED = "job_failed"
REASON_MESSAGES = {**{r.value: m for r, m in plan.MESSAGES.items()},
                   OVER_QUOTA: "the organization's integration-user quota is used up",
                   JOB_FAILED: "the job stopped on a store error that persisted; the user was "
                               "not migrated and their slot is free: migrate them again"}


@dataclass(frozen=True, slots=True)
class JobItem:
    """What a job did (or will do) for one selected user."""

    crm_user_id: str
    state: str  # pending, done, rejected
    reason: str = ""
    integration_user_id: str = ""

    @property
    def message(self) -> str:
        return REASON_MESSAGES.get(self.reason, self.reason)


@dataclass(frozen=True, slots=True)
class Job:
    """A migration job and its progress."""

    job_id: str
    org_id: str
    kind: str
    request_key: str
    requested_by: str
    state: str  # pending, running, done
    total: int
    done: int
    rejected: int
    revision: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    items: tuple[JobItem, ...] = ()
    failed: bool = False  # finished by a store error that persisted (authz.migration.retry)

    @property
    def processed(self) -> int:
        return self.done + self.rejected
