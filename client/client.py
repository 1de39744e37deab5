"""AuthzClient (blocking): Check, CheckBatch, Attribute, ListFilter, ImportDirectory,
Migrate; AsyncAuthzClient (client/aio.py) has the same methods as coroutines.

Fail closed by default: when no server answers (UNAVAILABLE after retries, or the
deadline passes) `check` returns a deny with reason "server_unavailable" and
`list_filter` a filter that shows nothing, rather than raising, so a caller that forgets
to handle errors still refuses the operation. Errors caused by the request itself
(INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ...) always raise AuthzRpcError: they
are bugs to fix, not outages to ride out. Calls that change state (Attribute,
ImportDirectory, Migrate) raise AuthzUnavailable when no server answered.

The default deadline (3 s) is longer than the server's wait for a `min_revision` (2 s),
so a revision that never arrives is seen as FAILED_PRECONDITION, not as an outage.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import grpc

from . import channel as _ch
from . import requests as _rq
from .coalesce import Coalescer, Settings, Stats
from .errors import AuthzRpcError, AuthzUnavailable, item_error
from .results import AttributeResult, ListFilterResult, MigrateResult, MigrationJob
from .types import SERVER_UNAVAILABLE, CheckError, CheckQuery, CheckResult
from .v1 import authz_pb2 as pb
from .v1 import authz_pb2_grpc as pb_grpc

T = TypeVar("T")
OnUnavailable = Literal["deny", "allow", "raise"]
#: Seconds per call: above the server's 2 s min_revision wait, with room to answer.
DEFAULT_DEADLINE = 3.0
RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
OUTAGE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
query = _rq.query


class Base:
    """Settings shared by both clients."""

    def __init__(self, target: str, *, deadline: float = DEFAULT_DEADLINE, retries: int = 3,
                 backoff: float = 0.05, max_backoff: float = 1.0,
                 on_unavailable: OnUnavailable = "deny", fail_open: bool = False,
                 coalesce: bool = True, coalesce_wait: float = 0.001,
                 coalesce_max: int = 500,
                 ca: _ch.PathOrBytes | None = None, cert: _ch.PathOrBytes | None = None,
                 key: _ch.PathOrBytes | None = None, token: str | None = None) -> None:
        """`ca` turns TLS on (server verified against it); `cert` and `key` add a client
        certificate (mTLS); `token` is sent as `authorization: Bearer ...` on every call.
        `coalesce=False` sends every `check` as its own Check RPC (see coalesce.py)."""
        self.target = target
        self._creds = _ch.credentials(ca, cert, key)
        self._metadata = _ch.metadata(token)
        self.deadline = deadline
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_unavailable: OnUnavailable = "allow" if fail_open else on_unavailable
        self.coalescing = Settings(coalesce, coalesce_wait, coalesce_max)

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so retrying clients do not stampede."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))

    def _why(self, err: grpc.RpcError) -> str:
        return f"authz server {self.target} unavailable ({err.code().name}: {err.details()})"

    def _unavailable(self, err: grpc.RpcError) -> CheckResult:
        if self.on_unavailable == "raise":
            raise AuthzUnavailable.from_rpc(err) from err
        allowed = self.on_unavailable == "allow"
        return CheckResult(allowed=allowed, reason=SERVER_UNAVAILABLE,
                           message=self._why(err) + "; "
                           + ("failing open" if allowed else "failing closed"))

    def _no_filter(self, err: grpc.RpcError) -> ListFilterResult:
        """Fail closed for lists: nothing visible (even under fail_open: a list that shows
        everything is not a safe default)."""
        if self.on_unavailable == "raise":
            raise AuthzUnavailable.from_rpc(err) from err
        return ListFilterResult(scope="none", filter={"false": True}, sql_where="1 = 0",
                                sql_params=(), reason=SERVER_UNAVAILABLE,
                                message=self._why(err) + "; failing closed")

    @staticmethod
    def _raise(err: grpc.RpcError) -> AuthzRpcError:
        cls = AuthzUnavailable if err.code() in OUTAGE else AuthzRpcError
        return cls.from_rpc(err)


def batch_results(resp: pb.CheckBatchResponse) -> list[CheckResult | CheckError]:
    return [CheckResult.from_proto(r.response) if r.HasField("response") else item_error(r.error)
            for r in resp.results]


class AuthzClient(Base):
    """Blocking client; one channel, reused, safe to share between threads. Use as a
    context manager or call close()."""

    def __init__(self, target: str, *, channel: grpc.Channel | None = None, **kw: Any) -> None:
        super().__init__(target, **kw)
        self._channel = channel or _ch.sync_channel(target, self._creds)
        self._stub = pb_grpc.AuthzServiceStub(self._channel)
        self._coalescer = Coalescer(self._check_one, self._check_many, self.coalescing)

    @property
    def coalesce_stats(self) -> Stats:
        """Check RPCs, CheckBatch RPCs and questions batched so far by `check`."""
        return self._coalescer.stats

    def __enter__(self) -> AuthzClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[..., T], request: Any, timeout: float | None) -> T:
        attempt = 0
        while True:
            try:
                return fn(request, timeout=timeout or self.deadline, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt >= self.retries:
                    raise
                time.sleep(self._delay(attempt))
                attempt += 1

    def check(self, org_id: str, user: str, action: str, module: str, *,
              timeout: float | None = None, **kw: Any) -> CheckResult:
        """Ask one question; keyword arguments are CheckQuery's fields. Concurrent calls
        from several threads are coalesced into one CheckBatch (see coalesce.py)."""
        return self.check_query(query(org_id, user, action, module, **kw), timeout=timeout)

    def check_query(self, q: CheckQuery, *, timeout: float | None = None) -> CheckResult:
        return self._coalescer.check(q, timeout)

    def _check_one(self, q: CheckQuery, timeout: float | None) -> CheckResult:
        try:
            return CheckResult.from_proto(self._call(self._stub.Check, q.to_proto(), timeout))
        except grpc.RpcError as err:
            if err.code() in OUTAGE:
                return self._unavailable(err)
            raise AuthzRpcError.from_rpc(err) from err

    def _check_many(self, queries: Sequence[CheckQuery], timeout: float | None
                    ) -> list[CheckResult | CheckError]:
        req = pb.CheckBatchRequest(requests=[q.to_proto() for q in queries])
        try:
            resp = self._call(self._stub.CheckBatch, req, timeout)
        except grpc.RpcError as err:
            if err.code() in OUTAGE:
                return [self._unavailable(err) for _ in queries]
            raise AuthzRpcError.from_rpc(err) from err
        return batch_results(resp)

    def check_batch(self, queries: Sequence[CheckQuery], *, timeout: float | None = None
                    ) -> list[CheckResult | CheckError]:
        """Decide up to 1000 questions in one CheckBatch; results in order, an invalid
        item as CheckError (the others are unaffected)."""
        return self._check_many(queries, timeout)

    def check_many(self, queries: Sequence[CheckQuery], *, timeout: float | None = None
                   ) -> list[CheckResult | CheckError]:
        """Any number of questions, in CheckBatch calls of at most 1000; results in order."""
        out: list[CheckResult | CheckError] = []
        for i in range(0, len(queries), 1000):
            out.extend(self._check_many(queries[i:i + 1000], timeout))
        return out

    def attribute(self, org_id: str, user: str, action: str, module: str, *,
                  timeout: float | None = None, **kw: Any) -> AttributeResult:
        """Whom to record an action under; keyword arguments are AttributeRequest fields
        (record_id, decision_id)."""
        try:
            return AttributeResult.from_proto(self._call(
                self._stub.Attribute, _rq.attribute(org_id, user, action, module, **kw), timeout))
        except grpc.RpcError as err:
            raise self._raise(err) from err

    def list_filter(self, org_id: str, user: str, module: str, action: str = "view", *,
                    timeout: float | None = None, **kw: Any) -> ListFilterResult:
        """Which records `user` may see (`channel`, `placeholder` "qmark"|"dollar"|"percent",
        `sql_columns`, `min_revision`)."""
        try:
            return ListFilterResult.from_proto(self._call(
                self._stub.ListFilter, _rq.list_filter(org_id, user, module, action, **kw),
                timeout))
        except grpc.RpcError as err:
            if err.code() in OUTAGE:
                return self._no_filter(err)
            raise AuthzRpcError.from_rpc(err) from err

    def import_directory(self, request: pb.ImportDirectoryRequest | Mapping[str, Any], *,
                         timeout: float | None = None) -> int:
        """Upsert a directory (idempotent, so retried); returns the new revision."""
        try:
            resp: pb.ImportDirectoryResponse = self._call(
                self._stub.ImportDirectory, _rq.directory(request), timeout)
        except grpc.RpcError as err:
            raise self._raise(err) from err
        return resp.directory_revision

    def migrate(self, org_id: str, caller: str, mode: _rq.MigrateModeName = "preview", *,
                crm_user_ids: Sequence[str] = (), request_key: str = "",
                timeout: float | None = None, **kw: Any) -> MigrateResult:
        """Preview a migration, or apply one (an idempotency key is made up if none is
        given, so the retry of an apply finds the same job)."""
        req = _rq.migrate(org_id, caller, mode, crm_user_ids, request_key, **kw)
        try:
            return MigrateResult.from_proto(self._call(self._stub.Migrate, req, timeout))
        except grpc.RpcError as err:
            raise self._raise(err) from err

    def migration_job(self, org_id: str, job_id: str, *, summary_only: bool = False,
                      timeout: float | None = None) -> MigrationJob:
        req = pb.GetMigrationJobRequest(org_id=org_id, job_id=job_id, summary_only=summary_only)
        try:
            return MigrationJob.from_proto(self._call(self._stub.GetMigrationJob, req, timeout))
        except grpc.RpcError as err:
            raise self._raise(err) from err

    def watch_migration_job(self, org_id: str, job_id: str, *, timeout: float | None = 60.0
                            ) -> Iterator[MigrationJob]:
        """The job's progress as it changes, ending once it is finished."""
        req = pb.GetMigrationJobRequest(org_id=org_id, job_id=job_id)
        try:
            for m in self._stub.WatchMigrationJob(req, timeout=timeout, metadata=self._metadata):
                yield MigrationJob.from_proto(m)
        except grpc.RpcError as err:
            raise self._raise(err) from err

    def wait_migration_job(self, org_id: str, job_id: str, *, timeout: float | None = 60.0
                           ) -> MigrationJob:
        """Block until the job is finished; returns its final state."""
        last = None
        for last in self.watch_migration_job(org_id, job_id, timeout=timeout):
            if last.finished:
                return last
        return last if last is not None else self.migration_job(org_id, job_id)
