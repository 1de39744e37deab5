"""Errors the SDK raises, read from gRPC status details without grpcio-status.

The server sends google.rpc.Status in the `grpc-status-details-bin` trailer; parsing it
here keeps the client's dependencies to grpcio, protobuf and googleapis-common-protos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from .types import CheckError, FieldViolation

_DETAILS_KEY = "grpc-status-details-bin"
#: CheckBatch names an item's field "requests[3].module"; a single Check says "module".
_ITEM_PREFIX = re.compile(r"requests\[\d+\]\.")


class AuthzRpcError(Exception):
    """The server refused a call; `violations` names the offending request fields."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 violations: tuple[FieldViolation, ...] = ()) -> None:
        self.code = code
        self.message = message
        self.violations = violations
        super().__init__(f"{code.name}: {message}")

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> AuthzRpcError:
        status = status_of(err)
        violations = _violations(status.details) if status is not None else ()
        return cls(err.code(), err.details() or "", violations)

    @classmethod
    def from_item(cls, error: CheckError) -> AuthzRpcError:
        """The exception a single Check raises for what a CheckBatch item reported."""
        return cls(code_named(error.code), _ITEM_PREFIX.sub("", error.message, count=1),
                   tuple(FieldViolation(_ITEM_PREFIX.sub("", v.field, count=1), v.description)
                         for v in error.violations))


class AuthzUnavailable(AuthzRpcError):
    """No server answered in time (UNAVAILABLE after retries, or the deadline passed)."""


def status_of(err: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status the server attached to a failed call, if any."""
    metadata: Iterable[Any] = err.trailing_metadata() or ()
    for key, value in metadata:
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def _violations(details: Sequence[any_pb2.Any]) -> tuple[FieldViolation, ...]:
    out: list[FieldViolation] = []
    for any_msg in details:
        if any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_msg.Unpack(bad)
            out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return tuple(out)


def item_error(status: status_pb2.Status) -> CheckError:
    """A CheckBatch item's error, typed."""
    return CheckError(_code_of(status.code).name, status.message, _violations(status.details))


def _code_of(number: int) -> grpc.StatusCode:
    for c in grpc.StatusCode:
        if c.value[0] == number:
            return c
    return grpc.StatusCode.UNKNOWN


def code_named(name: str) -> grpc.StatusCode:
    return grpc.StatusCode[name] if name in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
