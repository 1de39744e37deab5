"""authz_client: a thin typed SDK for the authz gRPC API (installed as `authz_client`,
distributed alone as `authz-client`: needs only grpcio, protobuf, googleapis-common-protos).

    from authz_client import AuthzClient
    with AuthzClient("127.0.0.1:50051") as authz:
        result = authz.check("acme-eu", "u-sam", "create", "invoices",
                             record={"total": 20000.0}, write_fields=["discount"])
        if not result.allowed:
            raise PermissionError(result.message)
"""

from ._version import __version__
from .aio import AsyncAuthzClient
from .client import DEFAULT_DEADLINE, AuthzClient, query
from .coalesce import Stats as CoalesceStats
from .errors import AuthzRpcError, AuthzUnavailable
from .results import (
    AttributeResult,
    ListFilterResult,
    MigrateResult,
    MigrationCandidate,
    MigrationExclusion,
    MigrationJob,
    MigrationUserResult,
)
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
    "DEFAULT_DEADLINE",
    "SERVER_UNAVAILABLE",
    "Approval",
    "AsyncAuthzClient",
    "AttributeResult",
    "AuthzClient",
    "AuthzRpcError",
    "AuthzUnavailable",
    "CheckError",
    "CheckQuery",
    "CheckResult",
    "CoalesceStats",
    "FieldViolation",
    "Identity",
    "ListFilterResult",
    "MigrateResult",
    "MigrationCandidate",
    "MigrationExclusion",
    "MigrationJob",
    "MigrationUserResult",
    "Record",
    "__version__",
    "query",
]
