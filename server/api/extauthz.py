"""Envoy external authorization: `envoy.service.auth.v3.Authorization/Check` on our engine.

Services behind an Envoy gateway get our decisions without a client library: Envoy's
ext_authz filter sends each HTTP request's headers here, we map them onto a Check, and
Envoy forwards the request (allow) or answers it itself (deny). Served by `authz serve`
on the same port as AuthzService, deciding in-process (no second hop).

Request headers (set by a trusted component in front, e.g. the CRM's gateway after
authentication; Envoy should strip client-supplied copies):
  x-authz-org, x-authz-user, x-authz-module     required
  x-authz-action      default from the HTTP method: GET/HEAD view, POST create,
                      PUT/PATCH edit, DELETE delete
  x-authz-product, x-authz-channel (crm|direct)
  x-authz-record-id, -customer-id, -owner, -total, -currency, -status,
  -approval-level, -created-by, -location        the record's attributes
  x-authz-read-fields, x-authz-write-fields      comma-separated field names

Allow: OK, and the upstream request gets x-authz-act-as (the finance or integration
user id to act as), x-authz-act-as-kind, x-authz-act-as-email, x-authz-decision-id and
x-authz-hidden-fields, overwriting any copy the client sent so they cannot be forged.
Deny: PERMISSION_DENIED with the decision's message; the client gets 403, a JSON body
(decision, reason, message, decision_id) and x-authz-reason. A malformed request gets
INVALID_ARGUMENT and 400; an unknown organization 403; an organization the caller may not
act for (callers file) 403, neither decided nor recorded; a server not ready 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2

from authz.decision import Decision
from authz.errors import (
    AuthzError,
    InvalidArgument,
    NotFound,
    PolicyUnavailable,
    UnknownOrganization,
)
from authz.v1 import authz_pb2 as pb

from ..edge import doors
from ..edge.auth import Forbidden, authorize
from ..edge.callers import Caller, current_caller
from ..process import metrics
from ..process.logs import event
from ..xds import envoy_config_core_v3_base_pb2 as core
from ..xds import envoy_service_auth_v3_external_auth_pb2 as ext
from ..xds import envoy_service_auth_v3_external_auth_pb2_grpc as ext_grpc
from ..xds import envoy_type_v3_http_status_pb2 as http
from . import convert
from .audited import call_deadline
from .failures import failure
from .service import AuthzService
from .threads import in_thread

SERVICE_NAME = ext.DESCRIPTOR.services_by_name["Authorization"].full_name
EXT_METHOD = f"/{SERVICE_NAME}/Check"
log = logging.getLogger("authz.server")
PREFIX = "x-authz-"
METHOD_ACTIONS = {"GET": "view", "HEAD": "view", "POST": "create", "PUT": "edit",
                  "PATCH": "edit", "DELETE": "delete"}
_CHANNELS = {"": pb.CHANNEL_UNSPECIFIED, "crm": pb.CHANNEL_CRM, "direct": pb.CHANNEL_DIRECT}
_RECORD_TEXT = ("record_id", "customer_id", "owner", "currency", "status", "created_by",
                "location")
_OVERWRITE = core.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def check_request(headers: Mapping[str, str], method: str) -> pb.CheckRequest:
    """Our CheckRequest from an HTTP request's headers (names lower-case, as Envoy sends).
    Header values are held to the rules of every door (server/edge/doors.py) and named as
    headers; `doors.question` then checks the request as a gRPC Check is checked."""
    def header_error(name: str, problem: str) -> InvalidArgument:
        return InvalidArgument(f"{PREFIX}{name} header", problem)

    def h(name: str) -> str:
        return doors.text(headers.get(PREFIX + name, ""), f"{PREFIX}{name} header").strip()

    for name in ("org", "user", "module"):
        if not h(name):
            raise header_error(name, "required")
    action = h("action") or METHOD_ACTIONS.get(doors.text(method, "HTTP method").upper(), "")
    if not action:
        raise header_error("action", f"required (no default for HTTP method {method[:16]})")
    channel = h("channel").lower()
    if channel not in _CHANNELS:
        raise header_error("channel", f"'{channel[:16]}': expected crm or direct")
    req = pb.CheckRequest(org_id=h("org"), user=h("user"), module=h("module"), action=action,
                          product=h("product"), channel=_CHANNELS[channel],
                          read_fields=_list(h("read-fields")),
                          write_fields=_list(h("write-fields")))
    for attr in _RECORD_TEXT:
        setattr(req.record, attr, h(attr.replace("_", "-")))
    if h("total"):
        req.record.total.value = doors.number(h("total"), f"{PREFIX}total header")
    if h("approval-level"):
        req.record.approval_level = doors.integer(h("approval-level"),
                                                  f"{PREFIX}approval-level header", 0, 2**31 - 1)
    return req


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _header(key: str, value: str) -> core.HeaderValueOption:
    return core.HeaderValueOption(header=core.HeaderValue(key=key, value=value),
                                  append_action=_OVERWRITE)


def act_as(d: pb.CheckResponse) -> str:
    """The id to act under: the deciding product's user, else the integration user."""
    i = d.identity
    by_product = {"books": i.books_user_id, "subscriptions": i.subscriptions_user_id}
    return (by_product.get(d.product) or i.integration_user_id or i.books_user_id
            or i.subscriptions_user_id or i.crm_user_id)


def allow(d: pb.CheckResponse) -> ext.CheckResponse:
    kind = pb.IdentityKind.Name(d.identity.kind).removeprefix("IDENTITY_KIND_").lower()
    headers = [("act-as", act_as(d)), ("act-as-kind", kind), ("act-as-email", d.identity.email),
               ("decision-id", d.decision_id), ("hidden-fields", ",".join(d.hidden_fields))]
    return ext.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=ext.OkHttpResponse(headers=[_header(PREFIX + k, v) for k, v in headers]))


def deny(code: int, http_code: int, message: str, reason: str,
         decision_id: str = "") -> ext.CheckResponse:
    body = {"decision": "deny", "reason": reason, "message": message}
    headers = [_header(PREFIX + "reason", reason), _header("content-type", "application/json")]
    if decision_id:
        body["decision_id"] = decision_id
        headers.append(_header(PREFIX + "decision-id", decision_id))
    return ext.CheckResponse(
        status=status_pb2.Status(code=code, message=message),
        denied_response=ext.DeniedHttpResponse(
            status=http.HttpStatus(code=http_code),
            headers=headers, body=json.dumps(body) + "\n"))


def answer(decision: pb.CheckResponse) -> ext.CheckResponse:
    """Envoy's answer for one of our decisions."""
    if decision.decision == pb.DECISION_ALLOW:
        return allow(decision)
    reason = pb.Reason.Name(decision.reason).removeprefix("REASON_").lower()
    return deny(code_pb2.PERMISSION_DENIED, http.Forbidden, decision.message, reason,
                decision.decision_id)


def refusal(exc: AuthzError) -> ext.CheckResponse:
    """Envoy's answer when the request could not be decided at all (the message is the one
    a gRPC Check gets: `convert.error_status`, never an exception's own text)."""
    message = convert.error_status(exc).message
    if isinstance(exc, InvalidArgument):
        return deny(code_pb2.INVALID_ARGUMENT, http.BadRequest, message, "invalid_request")
    if isinstance(exc, NotFound | UnknownOrganization):
        return deny(code_pb2.PERMISSION_DENIED, http.Forbidden, message, "unknown_organization")
    if isinstance(exc, PolicyUnavailable):
        return deny(code_pb2.UNAVAILABLE, http.ServiceUnavailable, message, "policy_unverified")
    return deny(code_pb2.UNAVAILABLE, http.ServiceUnavailable, message, "unavailable")


def forbidden(caller: Caller, org_id: str) -> ext.CheckResponse | None:
    """The caller's organizations, as the gate checks a Check's org_id: a request for an
    organization the caller may not act for is refused before anything is decided or
    recorded. A denied response (403), not a gRPC error: an Envoy set to
    failure_mode_allow would let an error through, never a denial."""
    if not caller.authenticated:
        return None  # authentication off (loopback development): no caller limits
    try:
        authorize(caller, EXT_METHOD, [org_id])
    except Forbidden as exc:
        metrics.AUTH_FAILURES.labels("PERMISSION_DENIED").inc()
        event(log, logging.INFO, "permission_denied", method="ext_authz", caller=caller.name,
              error=str(exc))
        return deny(code_pb2.PERMISSION_DENIED, http.Forbidden, str(exc),
                    "organization_not_allowed")
    return None


class ExtAuthzService(ext_grpc.AuthorizationServicer):  # type: ignore[misc]
    """Envoy's Authorization service, deciding through the AuthzService's engine."""

    def __init__(self, service: AuthzService, executor: Executor) -> None:
        self.service = service
        self.executor = executor

    async def Check(self, request: ext.CheckRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> ext.CheckResponse:
        engine, audit = self.service.engine(), self.service.audit
        if engine is None or audit is None:
            return deny(code_pb2.UNAVAILABLE, http.ServiceUnavailable, "server is starting",
                        "unavailable")
        attrs = request.attributes.request.http
        caller = current_caller.get()
        try:
            asked = check_request(attrs.headers, attrs.method)
            refused = forbidden(caller, asked.org_id)
            if refused is not None:
                return refused
            req = doors.question(asked)
            decision: Decision
            deadline = call_deadline(context, audit.longest_wait)
            decision, recorded = await in_thread(
                self.executor, audit.check, engine, req, caller.name, deadline)
            await audit.wait(recorded, deadline)  # strict audit: recorded before Envoy lets it by
        except AuthzError as exc:
            return refusal(exc)
        except Exception as exc:  # store, audit, bugs: a denial, never a gRPC error that an
            # Envoy with failure_mode_allow would let through; the text goes to the log only
            public = failure(exc, "ext_authz")
            return deny(code_pb2.UNAVAILABLE, http.ServiceUnavailable, public.message,
                        public.reason.lower())
        return answer(convert.check_response(decision))


def add_to_server(server: grpc.aio.Server, service: AuthzService, executor: Executor) -> None:
    ext_grpc.add_AuthorizationServicer_to_server(ExtAuthzService(service, executor), server)
