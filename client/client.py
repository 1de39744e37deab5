"""AuthzClient (blocking) and AsyncAuthzClient: Check, CheckBatch, ImportDirectory.

Fail closed by default: when no server answers (UNAVAILABLE after retries, or the
deadline passes) `check` returns a deny with reason "server_unavailable" rather than
raising, so a caller that forgets to handle errors still refuses the operation.
Errors caused by the request itself (INVALID_ARGUMENT, NOT_FOUND, ...) always raise
AuthzRpcError: they are bugs to fix, not outages to ride out.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from . import channel as _ch
from .types import (
    SERVER_UNAVAILABLE,
    CheckError,
    CheckQuery,
    CheckResult,
    FieldViolation,
    Record,
)
from .v1 import authz_pb2 as pb
from .v1 import authz_pb2_grpc as pb_grpc

T = TypeVar("T")
OnUnavailable = Literal["deny", "allow", "raise"]
DEFAULT_DEADLINE = 1.0
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
_OUTAGE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


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
        status = rpc_status.from_call(err)
        violations = _violations(status.details) if status is not None else ()
        return cls(err.code(), err.details() or "", violations)


def _violations(details: Sequence[Any]) -> tuple[FieldViolation, ...]:
    out: list[FieldViolation] = []
    for any_msg in details:
        if any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_msg.Unpack(bad)
            out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return tuple(out)


def _item_error(status: status_pb2.Status) -> CheckError:
    return CheckError(grpc.StatusCode(_code_tuple(status.code)).name, status.message,
                      _violations(status.details))


def _code_tuple(code: int) -> tuple[int, str]:
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.value  # type: ignore[no-any-return]
    return grpc.StatusCode.UNKNOWN.value  # type: ignore[no-any-return]


def query(org_id: str, user: str, action: str, module: str, **kw: Any) -> CheckQuery:
    """A CheckQuery; `record` may be a Record or a dict of its fields."""
    rec = kw.pop("record", None)
    if isinstance(rec, dict):
        rec = Record(**rec)
    for key in ("read_fields", "write_fields"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return CheckQuery(org_id, user, action, module, record=rec or Record(), **kw)


class _Base:
    """Settings shared by both clients."""

    def __init__(self, target: str, *, deadline: float = DEFAULT_DEADLINE, retries: int = 3,
                 backoff: float = 0.05, max_backoff: float = 1.0,
                 on_unavailable: OnUnavailable = "deny", fail_open: bool = False,
                 ca: _ch.PathOrBytes | None = None, cert: _ch.PathOrBytes | None = None,
                 key: _ch.PathOrBytes | None = None, token: str | None = None) -> None:
        """`ca` turns TLS on (server verified against it); `cert` and `key` add a client
        certificate (mTLS); `token` is sent as `authorization: Bearer ...` on every call."""
        self.target = target
        self._creds = _ch.credentials(ca, cert, key)
        self._metadata = _ch.metadata(token)
        self.deadline = deadline
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_unavailable: OnUnavailable = "allow" if fail_open else on_unavailable

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so retrying clients do not stampede."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))

    def _unavailable(self, err: grpc.RpcError) -> CheckResult:
        if self.on_unavailable == "raise":
            raise AuthzRpcError.from_rpc(err) from err
        allowed = self.on_unavailable == "allow"
        return CheckResult(allowed=allowed, reason=SERVER_UNAVAILABLE,
                           message=f"authz server {self.target} unavailable "
                                   f"({err.code().name}: {err.details()}); "
                                   + ("failing open" if allowed else "failing closed"))


class AuthzClient(_Base):
    """Blocking client; one channel, reused. Use as a context manager or call close()."""

    def __init__(self, target: str, *, channel: grpc.Channel | None = None, **kw: Any) -> None:
        super().__init__(target, **kw)
        self._channel = channel or _ch.sync_channel(target, self._creds)
        self._stub = pb_grpc.AuthzServiceStub(self._channel)

    def __enter__(self) -> AuthzClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[..., T], request: Any, timeout: float | None) -> T:
        attempt = 0
        while True:
            try:
                return fn(request, timeout=timeout or self.deadline, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() not in _RETRYABLE or attempt >= self.retries:
                    raise
                time.sleep(self._delay(attempt))
                attempt += 1

    def check(self, org_id: str, user: str, action: str, module: str, *,
              timeout: float | None = None, **kw: Any) -> CheckResult:
        """Ask one question; keyword arguments are CheckQuery's fields."""
        return self.check_query(query(org_id, user, action, module, **kw), timeout=timeout)

    def check_query(self, q: CheckQuery, *, timeout: float | None = None) -> CheckResult:
        try:
            return CheckResult.from_proto(self._call(self._stub.Check, q.to_proto(), timeout))
        except grpc.RpcError as err:
            if err.code() in _OUTAGE:
                return self._unavailable(err)
            raise AuthzRpcError.from_rpc(err) from err

    def check_batch(self, queries: Sequence[CheckQuery], *, timeout: float | None = None
                    ) -> list[CheckResult | CheckError]:
        """Decide up to 1000 questions; results in order, an invalid item as CheckError."""
        req = pb.CheckBatchRequest(requests=[q.to_proto() for q in queries])
        try:
            resp = self._call(self._stub.CheckBatch, req, timeout)
        except grpc.RpcError as err:
            if err.code() in _OUTAGE:
                return [self._unavailable(err) for _ in queries]
            raise AuthzRpcError.from_rpc(err) from err
        return _batch(resp)

    def import_directory(self, request: pb.ImportDirectoryRequest, *,
                         timeout: float | None = None) -> int:
        """Upsert a directory (idempotent, so retried); returns the new revision."""
        try:
            resp: pb.ImportDirectoryResponse = self._call(self._stub.ImportDirectory, request,
                                                          timeout)
        except grpc.RpcError as err:
            raise AuthzRpcError.from_rpc(err) from err
        return resp.directory_revision


class AsyncAuthzClient(_Base):
    """asyncio client; same behaviour as AuthzClient."""

    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None,
                 **kw: Any) -> None:
        super().__init__(target, **kw)
        self._channel = channel or _ch.aio_channel(target, self._creds)
        self._stub = pb_grpc.AuthzServiceStub(self._channel)

    async def __aenter__(self) -> AsyncAuthzClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, fn: Callable[..., Awaitable[T]], request: Any,
                    timeout: float | None) -> T:
        attempt = 0
        while True:
            try:
                return await fn(request, timeout=timeout or self.deadline,
                                metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() not in _RETRYABLE or attempt >= self.retries:
                    raise
                await asyncio.sleep(self._delay(attempt))
                attempt += 1

    async def check(self, org_id: str, user: str, action: str, module: str, *,
                    timeout: float | None = None, **kw: Any) -> CheckResult:
        return await self.check_query(query(org_id, user, action, module, **kw), timeout=timeout)

    async def check_query(self, q: CheckQuery, *, timeout: float | None = None) -> CheckResult:
        try:
            resp = await self._call(self._stub.Check, q.to_proto(), timeout)
        except grpc.RpcError as err:
            if err.code() in _OUTAGE:
                return self._unavailable(err)
            raise AuthzRpcError.from_rpc(err) from err
        return CheckResult.from_proto(resp)

    async def check_batch(self, queries: Sequence[CheckQuery], *, timeout: float | None = None
                          ) -> list[CheckResult | CheckError]:
        req = pb.CheckBatchRequest(requests=[q.to_proto() for q in queries])
        try:
            resp = await self._call(self._stub.CheckBatch, req, timeout)
        except grpc.RpcError as err:
            if err.code() in _OUTAGE:
                return [self._unavailable(err) for _ in queries]
            raise AuthzRpcError.from_rpc(err) from err
        return _batch(resp)

    async def import_directory(self, request: pb.ImportDirectoryRequest, *,
                               timeout: float | None = None) -> int:
        try:
            resp: pb.ImportDirectoryResponse = await self._call(self._stub.ImportDirectory,
                                                                request, timeout)
        except grpc.RpcError as err:
            raise AuthzRpcError.from_rpc(err) from err
        return resp.directory_revision


def _batch(resp: pb.CheckBatchResponse) -> list[CheckResult | CheckError]:
    return [CheckResult.from_proto(r.response) if r.HasField("response") else _item_error(r.error)
            for r in resp.results]
