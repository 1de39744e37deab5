"""Typed answers of Attribute, ListFilter and the migration RPCs.

Like CheckResult: plain frozen dataclasses with string enums, so that calling services
depend on neither the generated stubs' types nor the server's code. Each keeps the
message it was read from as `raw`, for fields added to the API after this SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf import json_format

from .types import SERVER_UNAVAILABLE, Identity, enum_name, identity_of
from .v1 import authz_pb2 as pb


@dataclass(frozen=True, slots=True)
class AttributeResult:
    """Whom to record an action under (DOMAIN §5): the user's own identity."""

    identity: Identity
    display_name: str
    send_from_email: str
    attribution_id: str
    mode: str  # "unified", or "legacy" (the CRM still acts as the integration owner)
    product: str  # "books" or "subscriptions": whose identity `act_as` is
    act_as: str
    send_from_note: str
    policy_revision: str
    directory_revision: int
    decision_id: str
    raw: pb.AttributeResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.AttributeResponse) -> AttributeResult:
        return cls(identity=identity_of(m.identity), display_name=m.display_name,
                   send_from_email=m.send_from_email, attribution_id=m.attribution_id,
                   mode=enum_name(pb.Mode.Name(m.mode), "MODE_"), product=m.product,
                   act_as=m.act_as,
                   send_from_note=m.send_from_note, policy_revision=m.policy_revision,
                   directory_revision=m.directory_revision, decision_id=m.decision_id, raw=m)


@dataclass(frozen=True, slots=True)
class ListFilterResult:
    """Which records a user may see: `scope` "all", "none" or "some" (then `filter`).

    `sql_where` with `sql_params` is the same condition for the caller's own query. When
    no server answered and the client fails closed, scope is "none" with reason
    SERVER_UNAVAILABLE: nothing is shown rather than everything."""

    scope: str
    filter: dict[str, Any]
    sql_where: str
    sql_params: tuple[Any, ...]
    policy_revision: str = ""
    directory_revision: int = 0
    org_id: str = ""
    reason: str = ""  # SERVER_UNAVAILABLE when the client made this answer up
    message: str = ""
    raw: pb.ListFilterResponse | None = field(default=None, repr=False, compare=False)

    @property
    def from_server(self) -> bool:
        return self.reason != SERVER_UNAVAILABLE

    @classmethod
    def from_proto(cls, m: pb.ListFilterResponse) -> ListFilterResult:
        return cls(scope=enum_name(pb.FilterScope.Name(m.scope), "FILTER_SCOPE_"),
                   filter=json_format.MessageToDict(m.filter), sql_where=m.sql_where,
                   sql_params=tuple(json_format.MessageToDict(v) for v in m.sql_params),
                   policy_revision=m.policy_revision, directory_revision=m.directory_revision,
                   org_id=m.org_id, raw=m)


@dataclass(frozen=True, slots=True)
class MigrationCandidate:
    crm_user_id: str
    email: str
    name: str
    books_user_id: str = ""
    usage: int = 0
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MigrationExclusion:
    crm_user_id: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class MigrationUserResult:
    crm_user_id: str
    state: str  # pending, done, rejected
    reason: str = ""
    message: str = ""
    integration_user_id: str = ""


@dataclass(frozen=True, slots=True)
class MigrationJob:
    """A background migration and its progress; `finished` once done or failed."""

    job_id: str
    org_id: str
    state: str  # queued, running, done, failed
    total: int
    done: int
    rejected: int
    directory_revision: int
    results: tuple[MigrationUserResult, ...]
    kind: str
    request_key: str
    created_at: datetime | None
    finished_at: datetime | None
    raw: pb.MigrationJob = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @classmethod
    def from_proto(cls, m: pb.MigrationJob) -> MigrationJob:
        return cls(
            job_id=m.job_id, org_id=m.org_id,
            state=enum_name(pb.MigrationState.Name(m.state), "MIGRATION_STATE_"),
            total=m.total, done=m.done, rejected=m.rejected,
            directory_revision=m.directory_revision,
            results=tuple(MigrationUserResult(r.crm_user_id, r.state, r.reason, r.message,
                                              r.integration_user_id) for r in m.results),
            kind=m.kind, request_key=m.request_key,
            created_at=m.created_at.ToDatetime() if m.HasField("created_at") else None,
            finished_at=m.finished_at.ToDatetime() if m.HasField("finished_at") else None,
            raw=m)


@dataclass(frozen=True, slots=True)
class MigrateResult:
    """A preview (candidates, exclusions, quota) or the job an apply started."""

    common_users: tuple[MigrationCandidate, ...]
    integration_candidates: tuple[MigrationCandidate, ...]
    excluded: tuple[MigrationExclusion, ...]
    job_id: str
    state: str
    message: str
    slots_left: int
    quota: int
    directory_revision: int
    job: MigrationJob | None
    raw: pb.MigrateResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.MigrateResponse) -> MigrateResult:
        def cand(c: pb.MigrationCandidate) -> MigrationCandidate:
            return MigrationCandidate(c.crm_user_id, c.email, c.name, c.books_user_id, c.usage,
                                      tuple(c.roles))

        return cls(
            common_users=tuple(cand(c) for c in m.common_users),
            integration_candidates=tuple(cand(c) for c in m.integration_candidates),
            excluded=tuple(MigrationExclusion(e.crm_user_id, e.reason, e.message)
                           for e in m.excluded),
            job_id=m.job_id, state=enum_name(pb.MigrationState.Name(m.state), "MIGRATION_STATE_"),
            message=m.message, slots_left=m.slots_left, quota=m.quota,
            directory_revision=m.directory_revision,
            job=MigrationJob.from_proto(m.job) if m.HasField("job") else None, raw=m)
