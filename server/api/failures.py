"""What a client is told when a call fails for a reason that is not its request.

One mapping for every door (gRPC AuthzService, Envoy ext_authz, HTTP): the store's, the
driver's or another request's text never reaches a client (an SQL statement, its bound
parameters, another organization's rows). A client gets a stable message, a status
(gRPC code and HTTP status) and a `google.rpc.ErrorInfo` reason it can branch on, with a
reference id; the detail goes to the log under the same reference.

Errors about the request itself (authz.errors.AuthzError) keep their own messages: they
are ours, written to name the field or the organization (`convert.error_status`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import exc as sa_exc

from authz.audit.writer import AuditUnavailable

from ..process.logs import event
from .convert import ERROR_DOMAIN

log = logging.getLogger("authz.server")
# A database that cannot be reached is an outage, not a bug: UNAVAILABLE, retryable.
DB_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                  sa_exc.DisconnectionError)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure as every door shows it."""

    code: grpc.StatusCode
    http_status: int
    reason: str  # google.rpc.ErrorInfo.reason
    message: str  # the only text a client gets
    ref: str  # the log line's reference

    def status(self) -> status_pb2.Status:
        """As a google.rpc.Status with its ErrorInfo (gRPC, and CheckBatch items)."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN,
                                           metadata={"ref": self.ref})
        packed = any_pb2.Any()
        packed.Pack(info)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[packed])


def failure(exc: BaseException, door: str) -> Failure:
    """The public face of an exception that is not a domain error; logs its detail."""
    ref = uuid.uuid4().hex[:12]
    if isinstance(exc, AuditUnavailable):
        event(log, logging.WARNING, "audit_unavailable", door=door, ref=ref, error=str(exc))
        return Failure(grpc.StatusCode.UNAVAILABLE, 503, "AUDIT_UNAVAILABLE",
                       f"the decision could not be recorded in the audit trail, so it is not "
                       f"given; retry shortly (ref {ref})", ref)
    if isinstance(exc, DB_UNAVAILABLE):
        detail = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
        event(log, logging.WARNING, "store_unavailable", door=door, ref=ref, error=str(detail))
        return Failure(grpc.StatusCode.UNAVAILABLE, 503, "STORE_UNAVAILABLE",
                       f"the directory store is unreachable; retry shortly (ref {ref})", ref)
    event(log, logging.ERROR, "internal_error", door=door, method=door, ref=ref,
          error=repr(exc), exc_info=True)
    return Failure(grpc.StatusCode.INTERNAL, 500, "INTERNAL", f"internal error (ref {ref})", ref)
