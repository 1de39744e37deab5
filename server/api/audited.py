"""The audit trail on the server: recording each decision and attribution, the Attribute
RPC, and the QueryAudit / VerifyAudit RPCs.

Recording is split in two so that neither the event loop nor the batched hot path waits
on the database: `check`/`attribute` run in a worker thread (decide, build the entry,
queue it; with a full queue and the block policy, the worker waits, not the loop), and
`confirm` runs on the loop, awaiting the commit only in strict mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from authz import budget
from authz.attribution import Attribution, AttributionDenied, Operation, PriorDecision, attribute
from authz.audit.chain import AuditEntry
from authz.audit.logwriter import LogWriter
from authz.audit.record import attribution_entry, check_entry, check_rows, product_of
from authz.audit.segment import default_log_dir
from authz.audit.writer import RECORDED, AuditUnavailable, AuditWriter, WhenFull, WriteMode
from authz.decision import CheckRequest, Decision, Mode
from authz.directory import DirectorySnapshot
from authz.engine.engine import Engine
from authz.errors import AuthzError, FailedPrecondition, InvalidArgument, NotFound
from authz.v1 import authz_pb2 as pb

from ..edge import doors
from ..process.config import Config
from . import convert
from .failures import failure

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported once the server listens, not before
    from authz.store.audit import AuditStore

_MAX_TEXT = 256
_MAX_PAGE = 1000  # authz.store.audit_query.MAX_PAGE
_MARGIN = 0.05  # seconds kept back from a call's deadline to answer UNAVAILABLE in time
log = logging.getLogger("authz.audit")


def call_deadline(context: grpc.aio.ServicerContext[Any, Any], longest: float) -> float:
    """When (time.monotonic) waits on the audit trail must end for this call: a little
    before the call's own deadline, and at most `longest` from now."""
    remaining = context.time_remaining()
    bound = longest if remaining is None else min(longest, remaining - _MARGIN)
    return time.monotonic() + max(0.0, bound)


class Snapshots(Protocol):
    def snapshot(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot: ...


class AuditRpc:
    """Records decisions and attributions through one writer; answers audit RPCs."""

    def __init__(self, writer: AuditWriter | LogWriter, trail: AuditStore | None,
                 directory: Snapshots,
                 longest_wait: float = 10.0) -> None:
        self.writer = writer
        self.trail = trail
        self.directory = directory
        self.longest_wait = longest_wait  # bound on audit waits of a call with no deadline

    # -- recording (worker threads) ----------------------------------------------------

    def _crm_user(self, req: CheckRequest, d: Decision) -> str:
        """The requesting CRM user's id. In legacy mode the decision names the owner, so
        look the user up (a cached snapshot: no query on the hot path)."""
        if d.mode == Mode.UNIFIED:
            return d.identity.crm_user_id or req.user
        crm = self.directory.snapshot(req.org_id).crm_user(req.user)
        return crm.id if crm is not None else req.user

    def check(self, engine: Engine, req: CheckRequest, caller: str,
              deadline: float | None = None) -> tuple[Decision, Future[None]]:
        """Decide and queue the entry; the future settles when it is recorded (strict).
        Waiting for room in the queue ends at `deadline` (AuditUnavailable)."""
        d = engine.check(req)
        if self.writer.mode == WriteMode.OFF:
            return d, self._submit([])
        return d, self._submit([check_entry(req, d, self._crm_user(req, d), caller)], deadline)

    def check_inline(self, engine: Engine, req: CheckRequest, caller: str
                     ) -> tuple[Decision, Future[None]] | None:
        """`check` for the event loop: decides from memory and queues without waiting, or
        returns None (nothing recorded) when that would block: organization not loaded,
        directory snapshot not fresh, legacy mode (its entry needs a directory lookup),
        queue full. The caller then runs `check` in a worker thread."""
        d = engine.check_cached(req)
        if d is None or d.mode != Mode.UNIFIED:
            return None
        if self.writer.mode == WriteMode.OFF:
            return d, self._submit([])
        fut = self.writer.submit([check_entry(req, d, d.identity.crm_user_id or req.user,
                                              caller)], wait=False)
        return None if fut is None else (d, fut)

    def check_many(self, engine: Engine, reqs: Sequence[CheckRequest], caller: str,
                   deadline: float | None = None
                   ) -> tuple[list[Decision | AuthzError], Future[None]]:
        """Decide a batch; every decided item is recorded (the items in error are not)."""
        out = engine.check_many(reqs)
        return out, self.record_many(reqs, out, caller, deadline)

    def record_many(self, reqs: Sequence[CheckRequest], out: Sequence[Decision | AuthzError],
                    caller: str, deadline: float | None = None) -> Future[None]:
        """Queue the entries of a decided batch (items in error are not recorded). CheckBatch
        calls it last, once its answer is built: the writer, woken by a full batch of
        entries, then does not compete for the GIL with building the answer."""
        if self.writer.mode == WriteMode.OFF:
            return self._submit([])
        decided = [(r, d, self._crm_user(r, d)) for r, d in zip(reqs, out, strict=True)
                   if isinstance(d, Decision)]
        if isinstance(self.writer, LogWriter):  # the log takes rows: no entry objects
            return self.writer.submit_rows(check_rows(decided, caller))
        return self._submit([check_entry(r, d, crm_user, caller) for r, d, crm_user in decided],
                            deadline)

    def _submit(self, entries: list[AuditEntry], deadline: float | None = None) -> Future[None]:
        if deadline is None:  # the request's own (authz.budget), whichever door it came by
            call = budget.current().call_deadline
            deadline = time.monotonic() + self.longest_wait
            if call is not None:
                deadline = min(deadline, call - _MARGIN)
        fut = self.writer.submit(entries, wait=True, deadline=deadline)
        assert fut is not None  # wait=True never returns None
        return fut

    def attribute(self, engine: Engine, msg: pb.AttributeRequest, caller: str,
                  deadline: float | None = None) -> tuple[pb.AttributeResponse, Future[None]]:
        """Name the identity to act as and queue the attribution entry. Any error raises
        before anything is queued: a refused attribution is never recorded as done."""
        org_id = _text(msg.org_id, "org_id", True)
        op = Operation(_text(msg.user, "user", True), _text(msg.action, "action", True),
                       _text(msg.module, "module", True), _text(msg.record_id, "record_id"),
                       _text(msg.product, "product"))
        org = engine.policies.get(org_id)
        snap = self.directory.snapshot(org_id)
        prior = self._prior(_text(msg.decision_id, "decision_id")) if msg.decision_id else None
        a = attribute(org, snap, op, prior)
        crm = snap.crm_user(op.user)
        crm_user = crm.id if crm is not None else op.user
        fut = self._submit([attribution_entry(org_id, crm_user, op, a, caller)], deadline)
        return _attribution_response(a), fut

    def _prior(self, decision_id: str) -> PriorDecision:
        """The cited decision as recorded. A batched entry may still be queued: flush once."""
        if self.trail is None:
            raise FailedPrecondition("the audit trail is off: decisions cannot be cited")
        e = self.trail.decision(decision_id)
        if e is None and self.writer.flush(timeout=5.0):
            e = self.trail.decision(decision_id)
        if e is None:
            raise NotFound(f"decision {decision_id} is not in the audit trail")
        return PriorDecision(e.decision_id, e.org_id, e.crm_user, e.action, e.module, e.record_id,
                             e.allowed, product_of(e.acting_kind))

    # -- on the event loop -------------------------------------------------------------

    async def confirm(self, recorded: Future[None], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Return once the entry is recorded (strict) or queued (batched); a strict entry
        not recorded, or not recorded before the call's deadline, ends the call UNAVAILABLE:
        the caller must not act on an unrecorded decision."""
        if recorded is RECORDED or (recorded.done() and recorded.exception() is None):
            return
        try:
            await self.wait(recorded, call_deadline(context, self.longest_wait))
        except AuditUnavailable as exc:
            await abort_unavailable(context, exc)

    async def wait(self, recorded: Future[None], deadline: float) -> None:
        """Wait for `recorded` until `deadline` (time.monotonic); AuditUnavailable when it
        failed or is late. The future itself is never cancelled (the writer settles it)."""
        if not recorded.done():
            waiter = asyncio.wrap_future(recorded)  # cancelling it would cancel `recorded`
            done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                waiter.add_done_callback(lambda f: f.cancelled() or f.exception())  # read later
                raise AuditUnavailable("the audit trail did not record the decision in time")
        recorded.result()

    # -- audit RPCs (worker threads) ---------------------------------------------------

    def _trail(self) -> AuditStore:
        if self.trail is None:
            raise FailedPrecondition("the audit trail is off on this server")
        return self.trail

    def query(self, msg: pb.QueryAuditRequest) -> pb.QueryAuditResponse:
        from authz.store.audit_query import Query

        trail = self._trail()
        org_id = _text(msg.org_id, "org_id", True)
        self.writer.flush(timeout=5.0)  # this server's acknowledged entries are in the answer
        if not 0 <= msg.page_size <= _MAX_PAGE:
            raise InvalidArgument("page_size", f"1 to {_MAX_PAGE}, or 0 for 100")
        after = doors.page_token(msg.page_token)
        user = _text(msg.user, "user")
        if "@" in user:  # the trail holds CRM user ids; accept an address too
            crm = self.directory.snapshot(org_id).crm_user(user)
            user = crm.id if crm is not None else user
        page = trail.query(Query(
            org_id, crm_user=user, record_id=_text(msg.record_id, "record_id"),
            decision_id=_text(msg.decision_id, "decision_id"),
            since=doors.timestamp(msg.since, "since") if msg.HasField("since") else None,
            until=doors.timestamp(msg.until, "until") if msg.HasField("until") else None,
            after_seq=after, limit=msg.page_size or 100))
        return pb.QueryAuditResponse(entries=[_entry_pb(e) for e in page.entries],
                                     next_page_token=str(page.next_after) if page.next_after else "")

    def verify(self, msg: pb.VerifyAuditRequest) -> pb.VerifyAuditResponse:
        trail = self._trail()
        self.writer.flush(timeout=5.0)  # verify what this server has acknowledged
        v = trail.verify(_text(msg.org_id, "org_id", True))
        return pb.VerifyAuditResponse(ok=v.ok, checked=v.checked, head_seq=v.head.seq,
                                      checkpoint_seq=v.head.checkpoint_seq,
                                      problems=[str(b) for b in v.breaks], dropped=v.head.dropped,
                                      quarantined=v.quarantined,
                                      quarantine=[str(q) for q in v.quarantine])

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer (at shutdown, before the store);
        returns within about `timeout` even with a store that hangs."""
        self.writer.close(timeout)


def _text(value: str, field: str, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument(field, "required")
    if len(value) > _MAX_TEXT:
        raise InvalidArgument(field, f"longer than {_MAX_TEXT} characters")
    return value


def _attribution_response(a: Attribution) -> pb.AttributeResponse:
    i = a.identity
    return pb.AttributeResponse(
        identity=pb.Identity(kind=convert._KINDS[i.kind], crm_user_id=i.crm_user_id, email=i.email,
                             display_name=i.display_name, books_user_id=i.books_user_id,
                             subscriptions_user_id=i.subscriptions_user_id,
                             integration_user_id=i.integration_user_id, roles=i.roles),
        display_name=a.display_name, send_from_email=a.send_from, attribution_id=a.attribution_id,
        mode=convert._MODES[a.mode], act_as=a.act_as, send_from_note=a.send_from_note,
        policy_revision=a.policy_revision, directory_revision=a.directory_revision,
        decision_id=a.decision_id, product=a.product)


def _entry_pb(e: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        org_id=e.org_id, seq=e.seq, kind=e.kind, at=e.at, decision_id=e.decision_id,
        crm_user=e.crm_user, acting_kind=e.acting_kind, acting_id=e.acting_id, action=e.action,
        module=e.module, record_id=e.record_id, allowed=e.allowed, reason=e.reason, mode=e.mode,
        policy_revision=e.policy_revision, directory_revision=e.directory_revision,
        caller=e.caller, prev_hash=e.prev_hash, hash=e.hash)


async def abort_unavailable(context: grpc.aio.ServicerContext[Any, Any],
                            exc: AuditUnavailable) -> None:
    """UNAVAILABLE: the decision was not recorded. A stable message and ErrorInfo reason
    AUDIT_UNAVAILABLE (server/api/failures.py): its text may be the store's, so only the log
    gets it."""
    await context.abort_with_status(rpc_status.to_status(failure(exc, "audit").status()))


async def abort_denied(context: grpc.aio.ServicerContext[Any, Any], exc: AttributionDenied) -> None:
    """PERMISSION_DENIED with the decision reason as a google.rpc.ErrorInfo a caller can read."""
    status = convert.error_status(exc)
    info = error_details_pb2.ErrorInfo(reason=exc.reason.upper(), domain="authz.v1")
    status.details.add().Pack(info)
    assert status.code == code_pb2.PERMISSION_DENIED
    await context.abort_with_status(rpc_status.to_status(status))


def open_audit(config: Config, directory: Any) -> AuditRpc:
    """The writer and trail `config` asks for, on the store's engine."""
    from authz.store.audit import AuditStore

    mode = WriteMode(config.audit_mode)
    engine = getattr(directory, "engine", None)
    trail = AuditStore(engine) if engine is not None else None
    if trail is None and mode != WriteMode.OFF:
        raise FailedPrecondition(f"audit mode {mode} needs a database store")
    from ..process.metrics import audit_log_lost, audit_quarantined

    sink = trail if trail is not None else _NoSink()
    writer: AuditWriter | LogWriter
    if config.audit_pipeline == "log" and mode != WriteMode.OFF:
        folder = log_dir(config)
        writer = LogWriter(sink, mode, folder, sync_interval=config.audit_max_lag,
                           ship_interval=config.audit_ship_interval,
                           on_quarantine=audit_quarantined, on_lost=audit_log_lost,
                           ship_process=(_shipper_process(config, folder)
                                         if config.audit_shipper == "process" else None))
    else:
        writer = AuditWriter(sink, mode, queue_size=config.audit_queue,
                             when_full=WhenFull(config.audit_when_full),
                             flush_interval=config.audit_flush_interval,
                             block_timeout=config.audit_wait, max_lag=config.audit_max_lag,
                             on_quarantine=audit_quarantined)
    return AuditRpc(writer, trail, directory, config.audit_wait)


def _shipper_process(config: Config, folder: Path) -> Callable[[], subprocess.Popen[bytes]]:
    """How to start this server's shipper process: `authz audit ship --follow PID` (the
    store URL by environment, never on a command line `ps` shows)."""
    cmd = [sys.executable, "-c", "import sys; from authz_server.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "audit", "ship", "--follow", str(os.getpid()),
           "--log-dir", str(folder), "--interval", str(config.audit_ship_interval)]
    env = {**os.environ, "AUTHZ_DB": config.db}
    return lambda: subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)


def log_dir(config: Config) -> Path:
    """The local audit log's folder: as configured; else beside an SQLite store's file;
    else var/audit-log/<a digest of the store URL> (one folder per store: a shipper must
    never carry one store's log into another)."""
    return default_log_dir(config.db, config.audit_log_dir)


class _NoSink:
    def append(self, entries: Sequence[object], dropped: object = None) -> None:
        return None

    def refused(self, exc: Exception) -> str:
        return ""

    def quarantine(self, refused: object) -> None:
        return None
