"""authz_client: a thin typed SDK for the authz gRPC API (installed as `authz_client`).

    from authz_client import AuthzClient
    with AuthzClient("127.0.0.1:50051") as authz:
        result = authz.check("acme-eu", "u-sam", "create", "invoices",
                             record={"total": 20000.0}, write_fields=["discount"])
        if not result.allowed:
            raise PermissionError(result.message)
"""

from .client import AsyncAuthzClient, AuthzClient, AuthzRpcError, query
from .types import (
    SERVER_UNAVAILABLE,
    Approval,
    CheckError,
    CheckQuery,
    CheckResult,
    FieldViolation,
    Identity,
    Record,
)

__all__ = [
    "SERVER_UNAVAILABLE",
    "Approval",
    "AsyncAuthzClient",
    "AuthzClient",
    "AuthzRpcError",
    "CheckError",
    "CheckQuery",
    "CheckResult",
    "FieldViolation",
    "Identity",
    "Record",
    "query",
]
