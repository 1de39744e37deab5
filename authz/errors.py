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


class PolicyUnavailable(AuthzError):
    """An organization's compiled policy did not verify (cut short, reordered, swapped,
    half-written): nothing is decided for that organization, and every other one is
    unaffected. Not the caller's fault, but about their request's organization, so it is
    answered per request (per CheckBatch item): gRPC UNAVAILABLE with ErrorInfo reason
    POLICY_UNVERIFIED. `str()` names the file for the log; clients get `public`."""

    def __init__(self, org_id: str, detail: str) -> None:
        self.org_id = org_id
        self.detail = detail
        super().__init__(detail)

    @property
    def public(self) -> str:
        return (f"the policy of organization '{self.org_id}' is unavailable on this server "
                "(it did not verify); nothing is decided for it until it is fixed")
