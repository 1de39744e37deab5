"""AuthZEN errors: a refusal as an HTTP status and a JSON body naming the field."""

from __future__ import annotations

from typing import Any

from google.rpc import code_pb2, error_details_pb2, status_pb2

from authz.errors import AuthzError

from .. import convert
from . import mapping as amap

# google.rpc.Code -> HTTP status (the mapping in google/rpc/code.proto).
HTTP_STATUS = {code_pb2.INVALID_ARGUMENT: 400, code_pb2.FAILED_PRECONDITION: 400,
               code_pb2.OUT_OF_RANGE: 400, code_pb2.UNAUTHENTICATED: 401,
               code_pb2.PERMISSION_DENIED: 403, code_pb2.NOT_FOUND: 404,
               code_pb2.UNAVAILABLE: 503, code_pb2.DEADLINE_EXCEEDED: 504}


class HttpError(Exception):
    """An answer that is not a decision: status, gRPC-style code name and message."""

    def __init__(self, status: int, code: str, message: str,
                 violations: list[tuple[str, str]] | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.violations = violations or []
        self.reason = reason  # google.rpc.ErrorInfo.reason, as gRPC callers get it

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.reason:
            error["reason"] = self.reason
        if self.violations:
            error["field_violations"] = [{"field": f, "description": d} for f, d in self.violations]
        return {"error": error}


def refusal(exc: AuthzError) -> HttpError:
    """The HTTP error a domain error maps to, through the one gRPC mapping (convert.py)."""
    status = convert.error_status(exc)
    return HttpError(HTTP_STATUS.get(status.code, 400), code_pb2.Code.Name(status.code),
                     status.message, _violations(status), _reason(status))


def _reason(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def _violations(status: status_pb2.Status) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


def _item_refusal(exc: AuthzError) -> dict[str, Any]:
    err = refusal(exc)
    field = err.violations[0][0] if err.violations else ""
    return amap.item_error(err.status, err.message, field)


def _batch_error(status: status_pb2.Status, j: int, i: int) -> dict[str, Any]:
    """A CheckBatch item's error, renamed from `requests[j].field` to the caller's path."""
    violations = _violations(status)
    if violations:
        field = amap.json_path(violations[0][0].replace(f"requests[{j}].", "", 1),
                               f"evaluations[{i}].")
        return amap.item_error(HTTP_STATUS.get(status.code, 400),
                               f"{field}: {violations[0][1]}", field)
    return amap.item_error(HTTP_STATUS.get(status.code, 400), status.message)
