"""Who is calling: the authenticated calling service, for scopes and the audit trail.

Authentication (interceptors) sets it per call; services read it. Until caller
authentication is configured, the caller is what the `x-authz-caller` metadata says
(or "anonymous"): fine on loopback, never trusted for authorization.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Caller:
    """A calling service, its scopes and the organizations it may act for."""

    name: str
    authenticated: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    orgs: frozenset[str] = field(default_factory=frozenset)  # empty with "*" in it: all

    def may(self, scope: str, org_id: str = "") -> bool:
        if scope not in self.scopes and "*" not in self.scopes:
            return False
        return not org_id or "*" in self.orgs or org_id in self.orgs


ANONYMOUS = Caller("anonymous", scopes=frozenset({"*"}), orgs=frozenset({"*"}))

current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "authz_current_caller", default=ANONYMOUS)
