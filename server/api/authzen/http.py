"""The AuthZEN Authorization API 1.0 over HTTP(S), served by `authz serve` beside gRPC.

A gateway, an identity provider or a CRM web component asks without a gRPC stack:

  GET  /.well-known/authzen-configuration   discovery (unauthenticated, like gRPC health)
  POST /access/v1/evaluation                one question   -> the Check path
  POST /access/v1/evaluations               many questions -> the CheckBatch path, or one
                                            by one for deny_on_first_deny /
                                            permit_on_first_permit
  POST /access/v1/search/resource           which records  -> the ListFilter path

The mapping of subject/action/resource/context onto our request is server/api/authzen/mapping.py.
Every call passes the gRPC gate's steps in the gate's order: authenticate (the same
callers file: bearer token, or a client certificate when `tls_client_ca` is set), decode,
authorize (scope and organizations, server/edge/auth.py), generic limits
(server/edge/limits.py), then the same conversion, engine, audit trail and error mapping as
gRPC. Errors are JSON: {"error": {"status", "code", "message", "field_violations"}}, the
field named as the caller wrote it; never store or driver text (500 carries a reference
id, the details are in the server log).

Why aiohttp: the HTTP server runs on the gRPC server's own asyncio event loop, in the
same process, so an evaluation is decided inline exactly as a gRPC Check is (no thread or
process hop, one engine, one audit writer); its TLS is Python's ssl module, which (unlike
gRPC Python) can ask for a client certificate without requiring one, so mTLS callers and
bearer-token callers share one HTTPS port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any

from aiohttp import web

from authz.budget import start as start_budget
from authz.errors import AuthzError, InvalidArgument
from authz.v1 import authz_pb2 as pb

from ...edge import auth as security
from ...edge import limits
from ...edge.auth import Authenticator, Forbidden, Unauthenticated, authorize
from ...edge.callers import Caller, current_caller
from ...edge.gate import UNAUTHENTICATED
from ...edge.resources import InFlight
from ...process import metrics
from ...process.config import Config
from ...process.logs import event
from .. import convert
from ..failures import failure
from ..service import AuthzService
from ..threads import in_thread
from . import mapping as amap
from . import search as authzen_search
from .errors import HttpError, _batch_error, _item_refusal, refusal

_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")  # a UTF-16 surrogate, escaped or raw

log = logging.getLogger("authz.server")
_RPC = "/" + pb.DESCRIPTOR.services_by_name["AuthzService"].full_name + "/"
CHECK, CHECK_BATCH, LIST_FILTER = _RPC + "Check", _RPC + "CheckBatch", _RPC + "ListFilter"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
ENDPOINTS = {"access_evaluation_endpoint": "/access/v1/evaluation",
             "access_evaluations_endpoint": "/access/v1/evaluations",
             "search_resource_endpoint": "/access/v1/search/resource"}
DISCOVERY = "/.well-known/authzen-configuration"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AuthzenApi:
    """The HTTP application and its listening site."""

    def __init__(self, cfg: Config, service: AuthzService, auth: Authenticator,
                 executor: Executor) -> None:
        self.cfg, self.service, self.auth, self.executor = cfg, service, auth, executor
        self.inflight: InFlight | None = None  # shared with the gRPC gate (app.Server.start)
        self.calls = 0  # POSTs in progress, against max_calls
        self.port = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_message_bytes,
                              middlewares=[self._middleware])
        app.router.add_get(DISCOVERY, self.discovery)
        app.router.add_post(ENDPOINTS["access_evaluation_endpoint"], self.evaluation)
        app.router.add_post(ENDPOINTS["access_evaluations_endpoint"], self.evaluations)
        app.router.add_post(ENDPOINTS["search_resource_endpoint"], self.search_resource)
        return app

    async def start(self, reuse_port: bool = False) -> int:
        host, _, port = self.cfg.http_listen.rpartition(":")
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=self.cfg.grace)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or None, int(port),
                           ssl_context=security.http_ssl_context(self.cfg), reuse_port=reuse_port or None)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        event(log, logging.INFO, "authzen_listening", listen=self.cfg.http_listen,
              port=self.port, tls=bool(self.cfg.tls_cert))
        return self.port

    async def stop(self) -> None:
        """Stop listening; in-flight requests get `grace` seconds (aiohttp's shutdown)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the gate ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Errors as JSON, X-Request-ID echoed, metrics counted; no internals leak."""
        name = request.match_info.route.resource.canonical if request.match_info.route.resource \
            else "unrouted"
        # The request's waits (min_revision) end when it does: no thread outlives it.
        budget = start_budget(None)
        held, counted = 0, False
        try:
            held = self._hold(request)
            counted = request.method == "POST"
            self.calls += counted  # on the loop: no lock needed
            response = await handler(request)
        except HttpError as exc:
            response = web.json_response(exc.body(), status=exc.status)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
        except AuthzError as exc:
            err = refusal(exc)
            response = web.json_response(err.body(), status=err.status)
        except web.HTTPException as exc:  # 404, 405, 413 from aiohttp itself
            response = web.json_response(HttpError(exc.status, "HTTP", exc.reason).body(),
                                         status=exc.status)
        except Exception as exc:  # store, audit, bugs: server/api/failures.py, as every door
            public = failure(exc, "AuthZEN " + name)
            response = web.json_response(HttpError(
                public.http_status, public.code.name, public.message,
                reason=public.reason).body(), status=public.http_status)
        finally:
            budget.cancel()
            if held and self.inflight is not None:
                self.inflight.give(held)
            self.calls -= counted
        request_id = request.headers.get("X-Request-ID")
        if request_id is not None:
            response.headers["X-Request-ID"] = request_id
        metrics.RPCS.labels("AuthZEN " + name, str(response.status)).inc()
        return response

    def _hold(self, request: web.Request) -> int:
        """Count the call against `max_calls` and take the body's bytes from the process's
        in-flight budget (the gRPC port's too, server/edge/resources.py) before reading it;
        429 RESOURCE_EXHAUSTED when either is full."""
        if request.method != "POST":
            return 0
        if self.calls >= self.cfg.max_calls:
            raise HttpError(429, "RESOURCE_EXHAUSTED", f"the server has {self.cfg.max_calls} "
                            "calls in progress on this port; retry shortly")
        if self.inflight is None:
            return 0
        size = request.content_length
        size = self.cfg.max_message_bytes if size is None else min(size, self.cfg.max_message_bytes)
        if not self.inflight.take(size):
            raise HttpError(429, "RESOURCE_EXHAUSTED", "the server holds its limit of request "
                            "bytes in progress; retry shortly")
        return size

    def _caller(self, request: web.Request, method: str) -> Caller:
        """Authenticate as the gRPC gate does (same callers file, same rules)."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            names = security.http_cert_names(request.transport) if self.auth.enabled else []
            caller = self.auth.identify(names, headers)
        except Unauthenticated as exc:
            metrics.AUTH_FAILURES.labels("UNAUTHENTICATED").inc()
            # As the gRPC gate: each at DEBUG, a summary at INFO at most once a minute
            # (one throttle for both doors).
            event(log, logging.DEBUG, "unauthenticated", method=method, peer=request.remote,
                  error=str(exc))
            summary = UNAUTHENTICATED.note("AuthZEN " + method)
            if summary is not None:
                event(log, logging.INFO, "unauthenticated_summary", last_error=str(exc),
                      **summary)
            raise HttpError(401, "UNAUTHENTICATED", str(exc)) from None
        current_caller.set(caller)
        return caller

    def _authorize(self, caller: Caller, method: str, orgs: list[str]) -> None:
        if not self.auth.enabled:
            return
        try:
            authorize(caller, method, orgs)
        except Forbidden as exc:
            metrics.AUTH_FAILURES.labels("PERMISSION_DENIED").inc()
            event(log, logging.INFO, "permission_denied", method=method, caller=caller.name,
                  error=str(exc))
            raise HttpError(403, "PERMISSION_DENIED", str(exc)) from None

    @staticmethod
    async def _json(request: web.Request) -> Mapping[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            problem = "nested too deeply" if isinstance(exc, RecursionError) else \
                f"not JSON ({str(exc)[:80]})"
            raise InvalidArgument("request", problem) from None
        if not isinstance(body, dict):
            raise InvalidArgument("request", "must be a JSON object")
        if _SURROGATE.search(raw):  # "\ud800" parses, but is no text a field can hold
            try:
                json.dumps(body, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                raise InvalidArgument("request", "a string holds a lone UTF-16 surrogate: "
                                      "not valid Unicode") from None
        return body

    def _parts(self) -> tuple[Any, Any]:
        engine, audit = self.service.engine(), self.service.audit
        if engine is None or audit is None:
            raise HttpError(503, "UNAVAILABLE", "server is starting")
        return engine, audit

    @staticmethod
    def _limits(msg: Any, at: str = "") -> None:
        """The generic edge limits every gRPC request passes (text, characters, counts)."""
        try:
            limits.check_message(msg)
        except InvalidArgument as exc:
            raise amap.renamed(exc, at) from None

    # -- endpoints ---------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        """PDP metadata; endpoints this PDP does not serve are omitted, as the spec asks."""
        base = self.cfg.http_base_url.rstrip("/") or f"{request.scheme}://{request.host}"
        body = {"policy_decision_point": base} | {k: base + v for k, v in ENDPOINTS.items()}
        return web.json_response(body, headers={"Cache-Control": "max-age=300"})

    async def evaluation(self, request: web.Request) -> web.Response:
        caller = self._caller(request, "evaluation")
        msg = amap.check_request(await self._json(request))
        self._authorize(caller, CHECK, [msg.org_id])
        self._limits(msg)
        return web.json_response(await self._decide(msg, caller))

    async def _decide(self, msg: pb.CheckRequest, caller: Caller, at: str = "") -> dict[str, Any]:
        """One question through Check's own path: convert, decide, record (strict audit:
        recorded before the answer leaves)."""
        engine, audit = self._parts()
        try:
            req = convert.check_request(msg)
            decision, recorded = await self.service.decide(engine, audit, req, caller.name)
        except InvalidArgument as exc:
            raise amap.renamed(exc, at) from None
        await _recorded(recorded)
        answer = convert.check_response(decision)
        _count(answer)
        return amap.decision(answer)

    async def evaluations(self, request: web.Request) -> web.Response:
        caller = self._caller(request, "evaluations")
        body = await self._json(request)
        if "evaluations" not in body:  # no array: a single evaluation (AuthZEN 1.0)
            msg = amap.check_request(body, extra=("options",))
            self._authorize(caller, CHECK, [msg.org_id])
            self._limits(msg)
            return web.json_response(await self._decide(msg, caller))
        amap.check_keys(body, (*amap.REQUEST_KEYS, "evaluations", "options"))
        items = body["evaluations"]
        if not isinstance(items, list):
            raise InvalidArgument("evaluations", "must be an array")
        if len(items) > self.cfg.max_batch:
            raise InvalidArgument("evaluations", f"{len(items)} items; at most "
                                  f"{self.cfg.max_batch} per request")
        semantic = _semantic(body.get("options"))
        parsed: list[pb.CheckRequest | InvalidArgument] = []
        for i, item in enumerate(items):
            at = f"evaluations[{i}]."
            try:
                parsed.append(amap.check_request(amap.with_defaults(item, body, at), at))
            except InvalidArgument as exc:
                parsed.append(exc)
        valid = [p for p in parsed if isinstance(p, pb.CheckRequest)]
        self._authorize(caller, CHECK_BATCH, [m.org_id for m in valid])
        for i, p in enumerate(parsed):
            if isinstance(p, pb.CheckRequest):
                self._limits(p, f"evaluations[{i}].")
        if semantic == "execute_all":
            out = await self._all(parsed, caller)
        else:
            out = await self._until(parsed, caller, stop_on=semantic == "permit_on_first_permit")
        return web.json_response({"evaluations": out})

    async def _all(self, parsed: list[pb.CheckRequest | InvalidArgument], caller: Caller
                   ) -> list[dict[str, Any]]:
        """Every item, in one CheckBatch (one worker hop, entries recorded as CheckBatch's)."""
        engine, audit = self._parts()
        positions = [i for i, p in enumerate(parsed) if isinstance(p, pb.CheckRequest)]
        batch = pb.CheckBatchRequest(requests=[p for p in parsed if isinstance(p, pb.CheckRequest)])
        answer, recorded, _ = await in_thread(
            self.executor, AuthzService._batch, engine, audit, batch, caller.name)
        await _recorded(recorded)
        out: list[dict[str, Any]] = [_item_refusal(p) if isinstance(p, InvalidArgument) else {}
                                     for p in parsed]
        for j, result in enumerate(answer.results):
            i = positions[j]
            if result.HasField("response"):
                _count(result.response)
                out[i] = amap.decision(result.response)
            else:
                out[i] = _batch_error(result.error, j, i)
        return out

    async def _until(self, parsed: list[pb.CheckRequest | InvalidArgument], caller: Caller,
                     stop_on: bool) -> list[dict[str, Any]]:
        """In order, one by one, up to and including the first decision equal to `stop_on`
        (a refused item counts as a deny): the later ones are neither decided nor recorded."""
        out: list[dict[str, Any]] = []
        for i, p in enumerate(parsed):
            try:
                if isinstance(p, InvalidArgument):
                    raise p
                answer = await self._decide(p, caller, f"evaluations[{i}].")
            except AuthzError as exc:
                answer = _item_refusal(exc)
            out.append(answer)
            if answer["decision"] is stop_on:
                break
        return out

    async def search_resource(self, request: web.Request) -> web.Response:
        caller = self._caller(request, "search/resource")
        search = authzen_search.parse(await self._json(request))
        self._authorize(caller, LIST_FILTER, [search.request.org_id])
        self._limits(search.request)
        engine, _ = self._parts()
        try:
            answer = await in_thread(self.executor, authzen_search.list_filter, engine, search)
        except InvalidArgument as exc:
            raise amap.renamed(exc) from None
        return web.json_response(authzen_search.results(search, answer))


async def _recorded(recorded: Future[None]) -> None:
    """Wait for the audit entry as gRPC does (strict: committed; batched: queued)."""
    if not (recorded.done() and recorded.exception() is None):
        await asyncio.wrap_future(recorded)


def _semantic(options: Any) -> str:
    if options is None:
        return "execute_all"
    if not isinstance(options, dict):
        raise InvalidArgument("options", "must be a JSON object")
    semantic = options.get("evaluations_semantic", "execute_all")
    if semantic not in SEMANTICS:
        raise InvalidArgument("options.evaluations_semantic", "expected one of "
                              + ", ".join(SEMANTICS))
    return str(semantic)


def _count(answer: pb.CheckResponse) -> None:
    outcome = "allow" if answer.decision == pb.DECISION_ALLOW else "deny"
    metrics.DECISIONS.labels(outcome, amap.reason_code(answer)).inc()
