"""AuthZEN 1.0 JSON <-> our Check request and answer (the mapping, without HTTP).

Kept apart from the HTTP server so that the mapping is one documented table, testable
without a socket. A question in AuthZEN terms becomes exactly the `authz.v1.CheckRequest`
a gRPC caller would send, which then goes through the same validation (server/edge/limits.py,
convert.py, the engine's) and the same decision path as Check:

  subject.type                 "user" (the only subject type)
  subject.id                   user: CRM user id or e-mail
  subject.properties.org_id    org_id (required); other subject properties (ip_address,
                               device_id, ...) are accepted and take no part
  action.name                  action (view, create, edit, approve, email, ...)
  action.properties            read_fields, write_fields: arrays of field names
  resource.type                module (invoices, estimates, subscriptions, ...)
  resource.id                  record.record_id ("" for a record not created yet)
  resource.properties          product, customer_id, owner, total (number), currency,
                               status, approval_level (integer), created_by, location
  context                      channel ("crm" | "direct"), min_revision (integer),
                               explain (boolean)

Keys outside this table in action.properties, resource.properties and context are
refused (400 naming them): a misspelt `write_field` or `chanel` must not silently drop
out of a decision (fail closed). Errors name the JSON path, e.g. `resource.type`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb

from ...edge import doors

SUBJECT_TYPE = "user"
RECORD_TEXT = ("customer_id", "owner", "currency", "status", "created_by", "location")
RESOURCE_PROPERTIES = ("product", "total", "approval_level", *RECORD_TEXT)
ACTION_PROPERTIES = ("read_fields", "write_fields")
CONTEXT_KEYS = ("channel", "min_revision", "explain")
REQUEST_KEYS = ("subject", "action", "resource", "context")
CHANNELS = {"": pb.CHANNEL_UNSPECIFIED, "crm": pb.CHANNEL_CRM, "direct": pb.CHANNEL_DIRECT}
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1

# Our request's field names (as convert.py, limits.py and the engine name them) -> JSON.
_JSON_PATHS = (("org_id", "subject.properties.org_id"), ("user", "subject.id"),
               ("action", "action.name"), ("module", "resource.type"),
               ("product", "resource.properties.product"), ("record.record_id", "resource.id"),
               ("record.", "resource.properties."), ("read_fields", "action.properties.read_fields"),
               ("write_fields", "action.properties.write_fields"), ("channel", "context.channel"),
               ("min_revision", "context.min_revision"), ("explain", "context.explain"))
_ITEM = re.compile(r"^requests\[(\d+)\]\.")


def json_path(field: str, at: str = "") -> str:
    """Where a field of our CheckRequest sits in the AuthZEN request ("record.total" ->
    "resource.properties.total"); `requests[i].` (a batch item) becomes `evaluations[i].`."""
    m = _ITEM.match(field)
    if m:
        at, field = f"{at}evaluations[{m.group(1)}].", field[m.end():]
    for ours, theirs in _JSON_PATHS:
        if field == ours or (ours.endswith(".") and field.startswith(ours)):
            return at + theirs + field[len(ours):]
        if field.startswith(ours + "["):  # write_fields[3]
            return at + theirs + field[len(ours):]
    return at + field


def renamed(exc: InvalidArgument, at: str = "") -> InvalidArgument:
    """The same refusal, naming the field as the AuthZEN caller wrote it."""
    return InvalidArgument(json_path(exc.field, at), exc.description)


def _object(value: Any, path: str, required: bool = True) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(path, "required: a JSON object" if value is None
                              else "must be a JSON object")
    return value


def _text(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"{path}.{key}", "must be a string")
    return value


def check_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], path: str = "") -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidArgument(f"{path}.{key}" if path else str(key),
                                  "unknown key; expected one of " + ", ".join(allowed))


def _integer(value: Any, path: str, high: int) -> int:
    # int64 as proto3 JSON writes it ("123") too; ASCII digits only (server/edge/doors.py)
    return doors.integer(value, path, 0, high)


def _names(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(path, "must be an array of field names")
    return value


def check_request(body: Mapping[str, Any], at: str = "", extra: tuple[str, ...] = (),
                  context_keys: tuple[str, ...] = CONTEXT_KEYS) -> pb.CheckRequest:
    """The CheckRequest an AuthZEN evaluation (subject, action, resource, context) asks.
    Only shapes and JSON types are checked here; every other rule is the gRPC door's."""
    check_keys(body, REQUEST_KEYS + extra, at.rstrip("."))
    subject = _object(body.get("subject"), at + "subject")
    stype = _text(subject, "type", at + "subject")
    if stype != SUBJECT_TYPE:
        raise InvalidArgument(at + "subject.type", f"'{stype[:64]}': the only subject type is "
                              f"'{SUBJECT_TYPE}' (a CRM user)")
    sprops = _object(subject.get("properties"), at + "subject.properties")
    action = _object(body.get("action"), at + "action")
    aprops = _object(action.get("properties"), at + "action.properties", required=False)
    check_keys(aprops, ACTION_PROPERTIES, at + "action.properties")
    resource = _object(body.get("resource"), at + "resource")
    rprops = _object(resource.get("properties"), at + "resource.properties", required=False)
    check_keys(rprops, RESOURCE_PROPERTIES, at + "resource.properties")
    context = _object(body.get("context"), at + "context", required=False)
    check_keys(context, context_keys, at + "context")

    req = pb.CheckRequest(
        org_id=_text(sprops, "org_id", at + "subject.properties"),
        user=_text(subject, "id", at + "subject"),
        action=_text(action, "name", at + "action"),
        module=_text(resource, "type", at + "resource"),
        product=_text(rprops, "product", at + "resource.properties"))
    req.record.record_id = _text(resource, "id", at + "resource")
    for name in RECORD_TEXT:
        setattr(req.record, name, _text(rprops, name, at + "resource.properties"))
    if rprops.get("total") is not None:
        total = rprops["total"]
        if isinstance(total, bool) or not isinstance(total, int | float):
            raise InvalidArgument(at + "resource.properties.total", "must be a number")
        req.record.total.value = doors.number(total, at + "resource.properties.total")
    if "approval_level" in rprops:
        req.record.approval_level = _integer(rprops["approval_level"],
                                             at + "resource.properties.approval_level", _INT32)
    for name in ACTION_PROPERTIES:
        if name in aprops:
            getattr(req, name).extend(_names(aprops[name], f"{at}action.properties.{name}"))
    channel = context.get("channel", "")
    if not isinstance(channel, str) or channel.lower() not in CHANNELS:
        raise InvalidArgument(at + "context.channel", "expected \"crm\" or \"direct\"")
    req.channel = CHANNELS[channel.lower()]
    if "min_revision" in context:
        req.min_revision = _integer(context["min_revision"], at + "context.min_revision", _INT64)
    explain = context.get("explain", False)
    if not isinstance(explain, bool):
        raise InvalidArgument(at + "context.explain", "must be true or false")
    req.explain = explain
    return req


def with_defaults(item: Any, defaults: Mapping[str, Any], at: str) -> Mapping[str, Any]:
    """An evaluations item completed by the request's top-level subject, action, resource
    and context: an item's own key wins, whole (AuthZEN 1.0, default values)."""
    item = _object(item, at.rstrip("."))
    return {**{k: v for k, v in defaults.items() if k in REQUEST_KEYS}, **item}


def reason_code(r: pb.CheckResponse) -> str:
    return pb.Reason.Name(r.reason).removeprefix("REASON_").lower()


def decision(r: pb.CheckResponse) -> dict[str, Any]:
    """An Access Evaluation response: `decision`, and a `context` holding the reason (an
    AuthZEN reason object: id, reason_admin) and our whole answer under `authz` (the
    CheckResponse in proto3 JSON, field names as in the proto): who to act as, hidden and
    read-only fields, the approval obligation, revisions."""
    return {"decision": r.decision == pb.DECISION_ALLOW,
            "context": {"id": r.decision_id, "reason": reason_code(r),
                        "reason_admin": {"en": r.message},
                        "authz": json_format.MessageToDict(r, preserving_proto_field_name=True)}}


def item_error(status: int, message: str, field: str = "") -> dict[str, Any]:
    """An evaluation that could not be decided: denied, with the error in its context."""
    error: dict[str, Any] = {"status": status, "message": message}
    if field:
        error["field"] = field
    return {"decision": False, "context": {"error": error}}
