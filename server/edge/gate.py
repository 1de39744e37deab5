"""The gate every gated call passes, in a fixed order; wrapped around each method's handler
once, when the service registers (`GatedServer`), not by an interceptor run per call.

1. authenticate (certificate or bearer token)     -> UNAUTHENTICATED
2. the bytes decoded as the request type          -> INVALID_ARGUMENT
3. scope for the method, organizations named      -> PERMISSION_DENIED
4. generic limits (text, characters, counts)       -> INVALID_ARGUMENT
   request bytes in progress over the budget       -> RESOURCE_EXHAUSTED (resources.py)
5. deadline already spent                          -> DEADLINE_EXCEEDED (no work done)
6. `current_caller` and the call's wait budget (authz.budget) set, span opened, handler run, metrics recorded
7. what escapes the handler is mapped: domain errors to their codes, an unreachable
   database to UNAVAILABLE (clients retry it), anything else to INTERNAL with a
   reference id in the log: a caller never sees a traceback or a bare UNKNOWN.

Authentication comes first so that an unauthenticated peer learns nothing about the
request format; authorization before validation for the same reason.
Every service is gated except health and reflection (probes and tooling carry no
data); the generic limits apply to AuthzService, whose messages are ours to bound.
The server is only reachable through `GatedServer`, so no service can be added around
the gate; a grpc.aio interceptor would cost two coroutines and a handler lookup per call
(issue 13).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
from grpc_status import rpc_status

from authz.budget import Budget
from authz.budget import start as start_budget
from authz.errors import AuthzError, InvalidArgument
from authz.v1 import authz_pb2 as pb

from ..api import convert
from ..api.failures import DB_UNAVAILABLE as DB_UNAVAILABLE
from ..api.failures import failure
from ..process import metrics
from ..process.logs import Throttle, event
from ..process.tally import BATCH_COUNTS, TALLY
from . import limits
from .auth import Authenticator, Forbidden, Unauthenticated, authorize
from .callers import current_caller
from .resources import InFlight

log = logging.getLogger("authz.server")
UNAUTHENTICATED = Throttle(60.0)  # the INFO summary of unauthenticated calls
SERVICE_PREFIX = "/" + pb.DESCRIPTOR.services_by_name["AuthzService"].full_name + "/"
UNGATED = ("/grpc.health.v1.Health/", "/grpc.reflection.")
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Refused(Exception):
    """A call the gate turns away before any work: the status it ends with."""

    def __init__(self, code: grpc.StatusCode, message: str, error: AuthzError | None = None
                 ) -> None:
        super().__init__(message)
        self.code, self.message, self.error = code, message, error

    async def abort(self, context: Ctx, name: str) -> NoReturn:
        if self.error is not None:
            await _abort_status(context, name, self.error)
        await _abort(context, name, self.code, self.message)


class Gate:
    """Authenticates, authorizes, validates and maps errors for every gated RPC."""

    def __init__(self, auth: Authenticator, inflight: InFlight | None = None) -> None:
        self.auth = auth
        self.inflight = inflight  # request bytes held by calls in progress (resources.py)

    def handler(self, method: str, handler: grpc.RpcMethodHandler | None
                ) -> grpc.RpcMethodHandler | None:
        """`handler` behind the gate (health and reflection as they are)."""
        if handler is None or method.startswith(UNGATED):
            return handler
        return self._wrap(method, handler)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        deserialize = limits.guard_deserializer(
            handler.request_deserializer, self.inflight.fits if self.inflight else None)
        if handler.request_streaming:
            # No client-streaming RPC exists; one added later must be gated first.
            return grpc.unary_unary_rpc_method_handler(_refuse_streaming,
                                                       request_deserializer=deserialize)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream), request_deserializer=deserialize,
                response_serializer=handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            self._unary(method, handler.unary_unary), request_deserializer=deserialize,
            response_serializer=handler.response_serializer)

    def _unary(self, method: str, inner: Callable[[Any, Ctx], Awaitable[Any]]
               ) -> Callable[[Any, Ctx], Awaitable[Any]]:
        name = _short(method)
        limited = method.startswith(SERVICE_PREFIX)
        inflight = self.inflight
        admit = self._admit
        clock = time.perf_counter

        async def behavior(request: Any, context: Ctx) -> Any:
            t0 = clock()
            try:  # steps 1-5: plain calls, no coroutine each (issue 13)
                budget = admit(method, name, limited, request, context)
                held = self._hold(request) if inflight is not None else 0
            except Refused as refused:
                await refused.abort(context, name)
            try:
                if metrics.tracing():
                    with metrics.span(method):
                        response = await inner(request, context)
                else:  # no tracer configured: no span machinery per call
                    response = await inner(request, context)
            except BaseException as exc:
                await _fail(context, name, exc)
            finally:
                budget.cancel()  # a worker thread still waiting for this call stops now
                if held:
                    inflight.give(held)  # type: ignore[union-attr]  # held > 0: not None
            _observe(name, response, clock() - t0)
            return response
        return behavior

    def _stream(self, method: str, inner: Callable[[Any, Ctx], Any]
                ) -> Callable[[Any, Ctx], AsyncIterator[Any]]:
        name = _short(method)
        limited = method.startswith(SERVICE_PREFIX)

        async def behavior(request: Any, context: Ctx) -> AsyncIterator[Any]:
            try:
                budget = self._admit(method, name, limited, request, context)
                held = self._hold(request) if self.inflight is not None else 0
            except Refused as refused:
                await refused.abort(context, name)
            try:
                with metrics.span(method):
                    result = inner(request, context)
                    if hasattr(result, "__aiter__"):
                        async for item in result:
                            yield item
                    else:  # a coroutine writing with context.write()
                        await result
            except BaseException as exc:
                await _fail(context, name, exc)
            finally:
                budget.cancel()
                if held and self.inflight is not None:
                    self.inflight.give(held)
            metrics.RPCS.labels(name, "OK").inc()
        return behavior

    def _hold(self, request: Any) -> int:
        """Take the request's bytes from the in-flight budget (given back when the call
        ends); a call the budget cannot hold is RESOURCE_EXHAUSTED, clients back off."""
        assert self.inflight is not None
        size = int(request.ByteSize())
        if not self.inflight.take(size):
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the server holds its limit of request bytes in progress "
                          f"({self.inflight.limit}); retry shortly")
        return size

    def _admit(self, method: str, name: str, limited: bool, request: Any, context: Ctx
               ) -> Budget:
        """Steps 1 to 5 in order; Refused names the status of the first that fails."""
        try:
            caller = self.auth.authenticate(context)
        except Unauthenticated as exc:
            metrics.AUTH_FAILURES.labels("UNAUTHENTICATED").inc()
            # Each at DEBUG; at INFO a summary at most once a minute (a misconfigured
            # caller retrying must not flood the log).
            event(log, logging.DEBUG, "unauthenticated", method=name, peer=context.peer(),
                  error=str(exc))
            summary = UNAUTHENTICATED.note(name)
            if summary is not None:
                event(log, logging.INFO, "unauthenticated_summary", last_error=str(exc),
                      **summary)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        if isinstance(request, limits.OverBudget):
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the server holds its limit of request bytes in progress; "
                          f"{request.size} more do not fit now, retry shortly")
        if isinstance(request, limits.Undecodable):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request: cannot decode as {name}'s request type ({request.error})")
        if self.auth.enabled:
            try:
                authorize(caller, method, limits.org_ids(request))
            except Forbidden as exc:
                metrics.AUTH_FAILURES.labels("PERMISSION_DENIED").inc()
                event(log, logging.INFO, "permission_denied", method=name, caller=caller.name,
                      error=str(exc))
                raise Refused(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None
        if limited:
            try:
                limits.check_message(request)
            except InvalidArgument as exc:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc), exc) from None
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise Refused(grpc.StatusCode.DEADLINE_EXCEEDED,
                          "deadline passed before the call was started")
        current_caller.set(caller)
        return start_budget(remaining)  # the call's waits end by its deadline (authz.budget)


class _GatedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler behind the gate: each method's handler wrapped once, cached."""

    def __init__(self, gate: Gate, inner: grpc.GenericRpcHandler) -> None:
        self.gate, self.inner = gate, inner
        self._gated: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self.inner.service(details)
        if handler is None:
            return None
        method: str = details.method
        cached = self._gated.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        gated = self.gate.handler(method, handler)
        self._gated[method] = (handler, gated)
        return gated


class GatedServer(grpc.aio.Server):  # type: ignore[misc]
    """The grpc.aio server as the services see it: every handler added through it is
    behind the gate, wrapped once here. The server itself is never handed out, so nothing
    can be registered around the gate."""

    def __init__(self, server: grpc.aio.Server, gate: Gate) -> None:
        self._server, self.gate = server, gate

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GatedGeneric(self.gate, h) for h in generic_rpc_handlers))

    def add_registered_method_handlers(self, service_name: str,
                                       method_handlers: dict[str, grpc.RpcMethodHandler]
                                       ) -> None:
        self._server.add_registered_method_handlers(service_name, {
            name: self.gate.handler(f"/{service_name}/{name}", h)
            for name, h in method_handlers.items()})

    def add_insecure_port(self, address: str) -> int:
        return int(self._server.add_insecure_port(address))

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return int(self._server.add_secure_port(address, server_credentials))

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(await self._server.wait_for_termination(timeout))


def _short(method: str) -> str:
    """"/authz.v1.AuthzService/Check" -> "Check"; other services keep their full path."""
    return method[len(SERVICE_PREFIX):] if method.startswith(SERVICE_PREFIX) else method


async def _refuse_streaming(request: Any, context: Ctx) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "client-streaming RPCs are not gated")
    raise AssertionError("unreachable")


async def _abort(context: Ctx, name: str, code: grpc.StatusCode, message: str) -> NoReturn:
    metrics.RPCS.labels(name, code.name).inc()
    await context.abort(code, message)
    raise AssertionError("unreachable")


async def _abort_status(context: Ctx, name: str, exc: AuthzError) -> NoReturn:
    status = convert.error_status(exc)
    metrics.RPCS.labels(name, grpc.StatusCode(_code(status.code)).name).inc()
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")


def _code(value: int) -> tuple[int, str]:
    for c in grpc.StatusCode:
        if c.value[0] == value:
            return c.value  # type: ignore[no-any-return]
    return grpc.StatusCode.UNKNOWN.value  # type: ignore[no-any-return]


async def _fail(context: Ctx, name: str, exc: BaseException) -> NoReturn:
    """Map what escaped a handler to a status; re-raise aborts and cancellations."""
    if isinstance(exc, grpc.aio.AbortError | asyncio.CancelledError) or not isinstance(exc, Exception):
        code = context.code() if hasattr(context, "code") else None
        if isinstance(code, grpc.StatusCode):
            metrics.RPCS.labels(name, code.name).inc()
        raise exc
    if isinstance(exc, AuthzError):
        await _abort_status(context, name, exc)
    # Store outages, audit failures, bugs: a stable message and an ErrorInfo reason; the
    # exception's own text only in the log (server/api/failures.py, one mapping for all doors).
    public = failure(exc, name)  # still inside the handler's except clause (traceback)
    metrics.RPCS.labels(name, public.code.name).inc()
    await context.abort_with_status(rpc_status.to_status(public.status()))
    raise AssertionError("unreachable")


def _observe(name: str, response: Any, seconds: float) -> None:
    """Count an answered call (plain counts, added to the metrics in bulk: server/process/tally.py)."""
    if isinstance(response, pb.CheckResponse):
        TALLY.answered(name, seconds, allowed=response.decision == pb.DECISION_ALLOW,
                       reason=response.reason)
    elif isinstance(response, pb.CheckBatchResponse):
        counts = BATCH_COUNTS.get()  # counted by the servicer as it answered
        if counts is None:  # another servicer: read the answers back
            counts = Counter((r.response.decision == pb.DECISION_ALLOW, r.response.reason)
                             for r in response.results if r.HasField("response"))
        TALLY.answered(name, seconds, counts)
    else:
        metrics.RPCS.labels(name, "OK").inc()
