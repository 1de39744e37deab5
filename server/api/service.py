"""The AuthzService servicer: proto in, domain call, proto out; errors as status codes.

Store calls are synchronous (SQLAlchemy), so they run in a thread pool: a slow store
(waiting for min_revision) must never stall the event loop that serves every other
caller. A Check whose policy and directory snapshot are already in memory is CPU only
(~10 µs) and is decided inline on the loop: a thread hop would cost more than the
decision (bench/server.py measures both; `inline=False` is the all-threads model).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
from grpc_status import rpc_status

from authz import directory_check
from authz.attribution import AttributionDenied
from authz.audit.writer import RECORDED, AuditUnavailable
from authz.decision import CheckRequest, Decision, Identity
from authz.directory import CrmUser, FinanceUser, IntegrationUser
from authz.directory_check import DirectoryPolicy
from authz.engine.engine import Engine
from authz.errors import AuthzError, InvalidArgument
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc

from ..edge.callers import current_caller
from ..process.config import Config
from ..process.logs import event
from ..process.tally import BATCH_COUNTS
from . import convert, listfilter
from .audited import AuditRpc, abort_denied, abort_unavailable, call_deadline, open_audit
from .threads import in_thread

log = logging.getLogger("authz.server")
T = TypeVar("T")


class Store(Protocol):
    """The part of authz.store the transport uses."""

    def snapshot(self, org_id: str, min_revision: int = 0) -> Any: ...

    def revision(self, org_id: str) -> int: ...

    def import_directory(self, org_id: str, crm_users: Iterable[CrmUser],
                         finance_users: Iterable[FinanceUser],
                         integration_users: Iterable[IntegrationUser] = (), *,
                         replace: bool = False, integration_quota: object = None) -> int: ...

    def close(self) -> None: ...


class AuthzService(pb_grpc.AuthzServiceServicer):
    """Maps each RPC onto the engine and the store."""

    def __init__(self, executor: Executor, max_batch: int = 1000, inline: bool = True) -> None:
        self.executor = executor
        self.max_batch = max_batch
        self.inline = inline  # decide on the event loop when no I/O is needed (bench/server.py)
        self._ready: tuple[Engine, Store] | None = None
        self.audit: AuditRpc | None = None

    def ready(self, engine: Engine, store: Store, audit: AuditRpc | None = None) -> None:
        """Start answering; until then calls get UNAVAILABLE (clients retry those).
        Without `audit`, nothing is recorded (tests of the transport alone)."""
        self.audit = audit or open_audit(Config(audit_mode="off"), store)
        self._ready = (engine, store)

    async def _audited(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Engine, AuditRpc]:
        engine, _ = await self._parts(context)
        assert self.audit is not None  # set by ready()
        return engine, self.audit

    async def _parts(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Engine, Store]:
        if self._ready is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is starting")
            raise AssertionError("unreachable")
        return self._ready

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_thread(self.executor, fn, *args)

    async def Check(self, request: pb.CheckRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> pb.CheckResponse:
        # Every step a plain call unless it must wait (issue 13): no coroutine per step.
        ready, audit = self._ready, self.audit
        if ready is None or audit is None:
            await self._parts(context)  # UNAVAILABLE: starting
            raise AssertionError("unreachable")
        try:
            req = convert.check_request(request)
            caller = current_caller.get().name
            done = audit.check_inline(ready[0], req, caller) if self.inline else None
            if done is None:
                done = await self._run(audit.check, ready[0], req, caller)
            decision, recorded = done
        except AuthzError as exc:
            await _abort(context, exc)
        except AuditUnavailable as exc:
            await abort_unavailable(context, exc)
        if recorded is not RECORDED:  # strict: recorded before the answer leaves
            await audit.confirm(recorded, context)
        _log_decision(req, decision)
        return convert.check_response(decision)

    async def decide(self, engine: Engine, audit: AuditRpc, req: CheckRequest, caller: str
                     ) -> tuple[Decision, Future[None]]:
        """One decision, queued for the audit trail: the path every door's single question
        takes (AuthZEN's evaluation; Check takes it step by step), so they decide and
        record alike."""
        # Inline on the loop when everything is in memory (~10 µs of CPU, less than a
        # thread hop costs); a worker thread when it would read the disk or database.
        done = audit.check_inline(engine, req, caller) if self.inline else None
        if done is None:
            done = await self._run(audit.check, engine, req, caller)
        return done

    async def CheckBatch(self, request: pb.CheckBatchRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.CheckBatchResponse:
        engine, audit = await self._audited(context)
        n = len(request.requests)
        if n > self.max_batch:
            await _abort(context, InvalidArgument(
                "requests", f"{n} items; at most {self.max_batch} per batch"))
        try:
            counts: Counter[tuple[bool, int]] = Counter()
            out, recorded, errors = await self._run(
                self._batch, engine, audit, request, current_caller.get().name,
                call_deadline(context, audit.longest_wait), counts)
            BATCH_COUNTS.set(counts)  # the gate counts the decisions from these (metrics)
        except AuditUnavailable as exc:
            await abort_unavailable(context, exc)
        await audit.confirm(recorded, context)
        event(log, logging.DEBUG, "check_batch", items=n, errors=errors)
        return out

    @staticmethod
    def _batch(engine: Engine, audit: AuditRpc, request: pb.CheckBatchRequest, caller: str,
               deadline: float | None = None, counts: Counter[tuple[bool, int]] | None = None
               ) -> tuple[pb.CheckBatchResponse, Future[None], int]:
        """A whole CheckBatch in one worker-thread hop: convert, decide (snapshots fetched
        once per organization), answer, then queue the audit entries; returns the answer,
        the recording future and the number of items in error. `counts` gets the decisions
        by (allowed, reason) for the metrics (counted here, not by reading answers back)."""
        # Invalid items keep their slot: convert errors are collected, the rest decided.
        parsed: list[CheckRequest | AuthzError] = []
        for i, item in enumerate(request.requests):
            try:
                parsed.append(convert.check_request(item))
            except InvalidArgument as exc:
                parsed.append(InvalidArgument(f"requests[{i}].{exc.field}", exc.description))
        valid = [p for p in parsed if isinstance(p, CheckRequest)]
        decisions = engine.check_many(valid)
        decided = iter(decisions)
        stamp = convert.now_stamp()  # one decided_at for the batch: decided together
        out = pb.CheckBatchResponse()
        add = out.results.add
        errors = 0
        identities: dict[int, tuple[Identity, pb.Identity]] = {}
        if counts is None:
            counts = Counter()
        for i, p in enumerate(parsed):
            result = p if isinstance(p, AuthzError) else next(decided)
            if isinstance(result, InvalidArgument) and not result.field.startswith("requests["):
                result = InvalidArgument(f"requests[{i}].{result.field}", result.description)
            if isinstance(result, AuthzError):
                errors += 1
                add(error=convert.error_status(result))
            else:
                convert.check_response(result, stamp=stamp, identities=identities,
                                       out=add().response)
                counts[(result.allowed, convert.reason_number(result.reason))] += 1
        return out, audit.record_many(valid, decisions, caller, deadline), errors

    async def Attribute(self, request: pb.AttributeRequest,
                        context: grpc.aio.ServicerContext[Any, Any]) -> pb.AttributeResponse:
        engine, audit = await self._audited(context)
        try:
            response, recorded = await self._run(audit.attribute, engine, request,
                                                 current_caller.get().name,
                                                 call_deadline(context, audit.longest_wait))
        except AttributionDenied as exc:
            await abort_denied(context, exc)
            raise AssertionError("unreachable") from exc
        except AuthzError as exc:
            await _abort(context, exc)
        except AuditUnavailable as exc:
            await abort_unavailable(context, exc)
        await audit.confirm(recorded, context)
        return response

    async def QueryAudit(self, request: pb.QueryAuditRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.QueryAuditResponse:
        _, audit = await self._audited(context)
        try:
            return await self._run(audit.query, request)
        except AuthzError as exc:
            await _abort(context, exc)

    async def VerifyAudit(self, request: pb.VerifyAuditRequest,
                          context: grpc.aio.ServicerContext[Any, Any]) -> pb.VerifyAuditResponse:
        _, audit = await self._audited(context)
        try:
            return await self._run(audit.verify, request)
        except AuthzError as exc:
            await _abort(context, exc)

    async def Migrate(self, request: pb.MigrateRequest,
                      context: grpc.aio.ServicerContext[Any, Any]) -> pb.MigrateResponse:
        from . import migrate as migrate_rpc  # the migration runtime (jobs, schedule, outbox) lives there

        await self._parts(context)
        try:
            return await migrate_rpc.migrate(self, request)
        except AuthzError as exc:
            await _abort(context, exc)

    async def GetMigrationJob(self, request: pb.GetMigrationJobRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> pb.MigrationJob:
        from . import migrate as migrate_rpc

        await self._parts(context)
        try:
            return await migrate_rpc.get_job(self, request)
        except AuthzError as exc:
            await _abort(context, exc)

    async def WatchMigrationJob(self, request: pb.GetMigrationJobRequest,
                                context: grpc.aio.ServicerContext[Any, Any]
                                ) -> AsyncIterator[pb.MigrationJob]:
        from . import migrate as migrate_rpc

        await self._parts(context)
        try:
            async for job in migrate_rpc.watch_job(self, request, context):
                yield job
        except AuthzError as exc:
            await _abort(context, exc)

    async def ListFilter(self, request: pb.ListFilterRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ListFilterResponse:
        engine, _ = await self._parts(context)
        try:
            return await self._run(listfilter.list_filter, engine, request)
        except AuthzError as exc:
            await _abort(context, exc)

    def engine(self) -> Engine | None:
        """The engine once ready (adapters such as the Envoy one decide through it)."""
        return self._ready[0] if self._ready is not None else None

    async def ImportDirectory(
        self, request: pb.ImportDirectoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ImportDirectoryResponse:
        engine, store = await self._parts(context)
        try:
            org_id, crm, finance, integ = convert.directory(request)
            # unknown organizations are NOT_FOUND here too
            manifest = engine.policies.get(org_id).manifest
            violations = directory_check.check(DirectoryPolicy.from_manifest(manifest), finance,
                                               integ)
            if violations:
                raise convert.directory_policy_errors(violations)
            revision = await self._run(functools.partial(
                store.import_directory, org_id, crm, finance, integ, replace=request.replace,
                integration_quota=manifest.get("integration_user_quota")))
        except AuthzError as exc:
            await _abort(context, exc)
        event(log, logging.INFO, "directory_imported", org_id=org_id, revision=revision,
                                              crm_users=len(crm), finance_users=len(finance),
                                              integration_users=len(integ))
        return pb.ImportDirectoryResponse(directory_revision=revision)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: AuthzError) -> NoReturn:
    """End the call with the status (and google.rpc details) the domain error maps to."""
    status = convert.error_status(exc)
    event(log, logging.DEBUG, "rejected", code=status.code, error=str(exc))
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")


def _log_decision(req: CheckRequest, d: Decision) -> None:
    if log.isEnabledFor(logging.DEBUG):
        event(log, logging.DEBUG, "decision", decision_id=d.decision_id, org_id=req.org_id,
              user=req.user, action=req.action, module=req.module, allowed=d.allowed,
              reason=d.reason.value, policy_revision=d.policy_revision,
              directory_revision=d.directory_revision)
