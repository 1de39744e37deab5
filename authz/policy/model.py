"""Typed policy sources: what the YAML files say, after validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from authz.policy.criteria import Criteria
from authz.policy.errors import Location

Scope = Literal["all", "assigned_customers"]
Access = Literal["hidden", "read_only", "read_write"]
ApprovalType = Literal["none", "simple", "multi_level", "custom"]
FlowOutcome = Literal["levels", "auto_approve", "auto_reject"]


@dataclass(frozen=True, slots=True)
class Role:
    """A role of one product: which actions it grants on which modules, and its reach."""

    product: str
    id: str
    name: str
    scope: Scope
    protected_data: bool
    admin: bool
    predefined: bool
    grants: dict[str, tuple[str, ...]]  # module -> actions, both in catalogue order
    where: Location
    grants_where: dict[str, Location] = field(default_factory=dict)  # module -> its entry

    @property
    def key(self) -> str:
        """The role's subject in Casbin policies, e.g. `books:staff`."""
        return f"{self.product}:{self.id}"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Access to one field of a module, per role."""

    product: str
    module: str
    field: str
    default: Access
    roles: dict[str, Access]
    personal_data: bool
    where: Location


@dataclass(frozen=True, slots=True)
class Level:
    """One approval level: its approvers, by role id and by user e-mail."""

    roles: tuple[str, ...]
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flow:
    """An approval rule: when it applies (criteria), and what follows."""

    id: str
    priority: int
    when: Criteria | None
    outcome: FlowOutcome
    levels: tuple[Level, ...]
    where: Location


@dataclass(frozen=True, slots=True)
class ModuleApproval:
    """Approval settings of one module."""

    product: str
    module: str
    type: ApprovalType
    flows: tuple[Flow, ...]  # ordered by priority
    blocked: tuple[str, ...]  # actions blocked until the record is approved
    where: Location


@dataclass(frozen=True, slots=True)
class Organization:
    """An organization's settings and its policy sources."""

    id: str
    name: str
    data_centre: str
    edition: str
    products: tuple[str, ...]
    mode: Literal["legacy", "unified"]
    integration_owner: str
    integration_user_quota: int
    allow_self_approval: bool
    roles: tuple[Role, ...]
    fields: tuple[FieldRule, ...]
    approvals: tuple[ModuleApproval, ...]
    files: tuple[str, ...]  # source files, relative to the policy root


@dataclass(frozen=True, slots=True)
class IntegrationSet:
    """The versioned integration-user permission set (shared by every organization)."""

    version: int
    effective: str
    summary: str
    grants: dict[str, dict[str, tuple[str, ...]]]  # product -> module -> actions


@dataclass(frozen=True, slots=True)
class Release:
    """Which organizations the unified mode is released to (phased release)."""

    default_available: bool
    editions_by_dc: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def available(self, data_centre: str, edition: str) -> bool:
        editions = self.editions_by_dc.get(data_centre)
        if editions is None:
            return self.default_available
        return edition in editions


@dataclass(frozen=True, slots=True)
class PolicyTree:
    """Every source under a policy root, validated."""

    root: str
    predefined: tuple[Role, ...]
    integration: IntegrationSet
    release: Release
    orgs: tuple[Organization, ...]
    shared_files: tuple[str, ...]
