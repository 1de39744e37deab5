"""Domain errors a caller can cause; the transport maps each to a status code."""

from __future__ import annotations


class AuthzError(Exception):
    """Base of errors that describe the caller's request, never a server fault."""


class InvalidArgument(AuthzError):
    """A request field is malformed or out of range (gRPC INVALID_ARGUMENT)."""

    def __init__(self, field: str, description: str,
                 more: tuple[tuple[str, str], ...] = ()) -> None:
        self.field = field
        self.description = description
        self.more = more  # further (field, description) violations found with this one
        super().__init__(f"{field}: {description}"
                         + (f" (and {len(more)} more)" if more else ""))


class UnknownOrganization(AuthzError):
    """No compiled policy exists for this organization (gRPC NOT_FOUND)."""

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        super().__init__(f"unknown organization '{org_id}'")


class NotFound(AuthzError):
    """A named thing (user, job, decision) does not exist (gRPC NOT_FOUND)."""


class PermissionDenied(AuthzError):
    """The caller may not do this (gRPC PERMISSION_DENIED)."""


class FailedPrecondition(AuthzError):
    """The system is not in a state to answer, e.g. a revision not yet reached."""
