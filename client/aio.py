"""AsyncAuthzClient: the asyncio twin of AuthzClient (same methods, as coroutines)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from . import channel as _ch
from . import requests as _rq
from .client import OUTAGE, RETRYABLE, Base, batch_results, query
from .coalesce import AsyncCoalescer, Stats
from .errors import AuthzRpcError
from .results import AttributeResult, ListFilterResult, MigrateResult, MigrationJob
from .types import CheckError, CheckQuery, CheckResult
from .v1 import authz_pb2 as pb
from .v1 import authz_pb2_grpc as pb_grpc

T = TypeVar("T")


class AsyncAuthzClient(Base):
    """asyncio client; same behaviour as AuthzClient. Checks awaited concurrently (e.g.
    under asyncio.gather) are coalesced into one CheckBatch (see coalesce.py)."""

    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None,
                 **kw: Any) -> None:
        super().__init__(target, **kw)
        self._channel = channel or _ch.aio_channel(target, self._creds)
        self._stub = pb_grpc.AuthzServiceStub(self._channel)
        self._coalescer = AsyncCoalescer(self._check_one, self._check_many, self.coalescing)

    @property
    def coalesce_stats(self) -> Stats:
        return self._coalescer.stats

    async def __aenter__(self) -> AsyncAuthzClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, fn: Callable[..., Awaitable[T]], request: Any,
                    timeout: float | None) -> T:
        attempt = 0
        while True:
            try:
                return await fn(request, timeout=timeout or self.deadline,
                                metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE or attempt >= self.retries:
                    raise
                await asyncio.sleep(self._delay(attempt))
                attempt += 1

    async def check(self, org_id: str, user: str, action: str, module: str, *,
                    timeout: float | None = None, **kw: Any) -> CheckResult:
        return await self.check_query(query(org_id, user, action, module, **kw), timeout=timeout)

    async def check_query(self, q: CheckQuery, *, timeout: float | None = None) -> CheckResult:
        return await self._coalescer.check(q, timeout)

    async def _check_one(self, q: CheckQuery, timeout: float | None) -> CheckResult:
        try:
            resp = await self._call(self._stub.Check, q.to_proto(), timeout)
        except grpc.RpcError as err:
            if err.code() in OUTAGE:
                return self._unavailable(err)
            raise AuthzRpcError.from_rpc(err) from err
        return CheckResult.from_proto(resp)

    async def _check_many(self, queries: Sequence[CheckQuery], timeout: float | None
                          ) -> list[CheckResult | CheckError]:
        req = pb.CheckBatchRequest(requests=[q.to_proto() for q in queries])
        try:
            resp = await self._call(self._stub.CheckBatch, req, timeout)
        except grpc.RpcError as err:
            if err.code() in OUTAGE:
                return [self._unavailable(err) for _ in queries]
            raise AuthzRpcError.from_rpc(err) from err
        return batch_results(resp)

    async def check_batch(self, queries: Sequence[CheckQuery], *, timeout: float | None = None
                          ) -> list[CheckResult | CheckError]:
        return await self._check_many(queries, timeout)

    async def check_many(self, queries: Sequence[CheckQuery], *, timeout: float | None = None
                         ) -> list[CheckResult | CheckError]:
        out: list[CheckResult | CheckError] = []
        for i in range(0, len(queries), 1000):
            out.extend(await self._check_many(queries[i:i + 1000], timeout))
        return out

    async def attribute(self, org_id: str, user: str, action: str, module: str, *,
                        timeout: float | None = None, **kw: Any) -> AttributeResult:
        try:
            return AttributeResult.from_proto(await self._call(
                self._stub.Attribute, _rq.attribute(org_id, user, action, module, **kw), timeout))
        except grpc.RpcError as err:
            raise self._raise(err) from err

    async def list_filter(self, org_id: str, user: str, module: str, action: str = "view", *,
                          timeout: float | None = None, **kw: Any) -> ListFilterResult:
        try:
            return ListFilterResult.from_proto(await self._call(
                self._stub.ListFilter, _rq.list_filter(org_id, user, module, action, **kw),
                timeout))
        except grpc.RpcError as err:
            if err.code() in OUTAGE:
                return self._no_filter(err)
            raise AuthzRpcError.from_rpc(err) from err

    async def import_directory(self, request: pb.ImportDirectoryRequest | Mapping[str, Any], *,
                               timeout: float | None = None) -> int:
        try:
            resp: pb.ImportDirectoryResponse = await self._call(
                self._stub.ImportDirectory, _rq.directory(request), timeout)
        except grpc.RpcError as err:
            raise self._raise(err) from err
        return resp.directory_revision

    async def migrate(self, org_id: str, caller: str, mode: _rq.MigrateModeName = "preview", *,
                      crm_user_ids: Sequence[str] = (), request_key: str = "",
                      timeout: float | None = None, **kw: Any) -> MigrateResult:
        req = _rq.migrate(org_id, caller, mode, crm_user_ids, request_key, **kw)
        try:
            return MigrateResult.from_proto(await self._call(self._stub.Migrate, req, timeout))
        except grpc.RpcError as err:
            raise self._raise(err) from err

    async def migration_job(self, org_id: str, job_id: str, *, summary_only: bool = False,
                            timeout: float | None = None) -> MigrationJob:
        req = pb.GetMigrationJobRequest(org_id=org_id, job_id=job_id, summary_only=summary_only)
        try:
            return MigrationJob.from_proto(
                await self._call(self._stub.GetMigrationJob, req, timeout))
        except grpc.RpcError as err:
            raise self._raise(err) from err

    async def watch_migration_job(self, org_id: str, job_id: str, *,
                                  timeout: float | None = 60.0) -> AsyncIterator[MigrationJob]:
        req = pb.GetMigrationJobRequest(org_id=org_id, job_id=job_id)
        try:
            async for m in self._stub.WatchMigrationJob(req, timeout=timeout,
                                                        metadata=self._metadata):
                yield MigrationJob.from_proto(m)
        except grpc.RpcError as err:
            raise self._raise(err) from err

    async def wait_migration_job(self, org_id: str, job_id: str, *,
                                 timeout: float | None = 60.0) -> MigrationJob:
        last = None
        async for last in self.watch_migration_job(org_id, job_id, timeout=timeout):
            if last.finished:
                return last
        return last if last is not None else await self.migration_job(org_id, job_id)
