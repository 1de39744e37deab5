"""The gate every AuthzService call passes: one interceptor, in a fixed order.

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


class Gate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates, authorizes, validates and maps errors for AuthzService RPCs."""

    def __init__(self, auth: Authenticator, inflight: InFlight | None = None) -> None:
        self.auth = auth
        # method -> (the service's handler, the gated one): wrapped once, not per call
        self._gated: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self.inflight = inflight  # request bytes held by calls in progress (resources.py)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        cached = self._gated.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if handler is None or method.startswith(UNGATED):
            return handler
        gated = self._wrap(method, handler)
        self._gated[method] = (handler, gated)
        return gated

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

        async def behavior(request: Any, context: Ctx) -> Any:
            t0 = time.perf_counter()
            budget = await self._admit(method, request, context)
            held = await self._hold(name, request, context)
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
                if held and self.inflight is not None:
                    self.inflight.give(held)
            _observe(name, response, time.perf_counter() - t0)
            return response
        return behavior

    def _stream(self, method: str, inner: Callable[[Any, Ctx], Any]
                ) -> Callable[[Any, Ctx], AsyncIterator[Any]]:
        name = _short(method)

        async def behavior(request: Any, context: Ctx) -> AsyncIterator[Any]:
            budget = await self._admit(method, request, context)
            held = await self._hold(name, request, context)
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

    async def _hold(self, name: str, request: Any, context: Ctx) -> int:
        """Take the request's bytes from the in-flight budget (given back when the call
        ends); a call the budget cannot hold is RESOURCE_EXHAUSTED, clients back off."""
        if self.inflight is None:
            return 0
        size = int(request.ByteSize())
        if not self.inflight.take(size):
            await _abort(context, name, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the server holds its limit of request bytes in progress "
                         f"({self.inflight.limit}); retry shortly")
        return size

    async def _admit(self, method: str, request: Any, context: Ctx) -> Budget:
        name = _short(method)
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
            await _abort(context, name, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if isinstance(request, limits.OverBudget):
            await _abort(context, name, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the server holds its limit of request bytes in progress; "
                         f"{request.size} more do not fit now, retry shortly")
        if isinstance(request, limits.Undecodable):
            await _abort(context, name, grpc.StatusCode.INVALID_ARGUMENT,
                         f"request: cannot decode as {name}'s request type ({request.error})")
        if self.auth.enabled:
            try:
                authorize(caller, method, limits.org_ids(request))
            except Forbidden as exc:
                metrics.AUTH_FAILURES.labels("PERMISSION_DENIED").inc()
                event(log, logging.INFO, "permission_denied", method=name, caller=caller.name,
                      error=str(exc))
                await _abort(context, name, grpc.StatusCode.PERMISSION_DENIED, str(exc))
        try:
            if method.startswith(SERVICE_PREFIX):
                limits.check_message(request)
        except InvalidArgument as exc:
            await _abort_status(context, name, exc)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            await _abort(context, name, grpc.StatusCode.DEADLINE_EXCEEDED,
                         "deadline passed before the call was started")
        current_caller.set(caller)
        return start_budget(remaining)  # the call's waits end by its deadline (authz.budget)


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
