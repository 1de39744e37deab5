"""Synthetic organizations and directories for the benchmark.

Organizations are built as typed policy sources (`authz.policy.model`) and compiled by
the real compiler (`compile_org`), so the benchmark loads exactly what production
loads; only YAML parsing is skipped, since it is not part of a decision and would
dominate the set-up time for 10,000 organizations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from authz import catalog
from authz.decision import Channel, CheckRequest, Record
from authz.directory import CrmUser, DirectorySnapshot, FinanceUser, IntegrationUser
from authz.policy.compiler import MODEL_CONF, compile_org
from authz.policy.criteria import parse
from authz.policy.errors import Location
from authz.policy.model import (
    FieldRule,
    Flow,
    Level,
    ModuleApproval,
    Organization,
    PolicyTree,
    Role,
)
from authz.policy.sources import read_tree

SHARED_ROOT = Path(__file__).resolve().parent.parent / "authz" / "policies"
BOOKS = catalog.BOOKS
#: The 15 Books modules with record actions (reports, dashboard and settings excluded).
RECORD_MODULES = tuple(m for m in catalog.BOOKS_MODULES if m not in ("reports", "dashboard",
                                                                    "settings"))
LOCATIONS = ("berlin", "paris", "rome", "madrid")
_HERE = Location("bench/orgs.py")


@dataclass(frozen=True, slots=True)
class Shape:
    """How big each synthetic organization is."""

    roles: int = 20
    modules: int = 15
    actions: int = 6
    users: int = 100


def shared_tree() -> PolicyTree:
    """Predefined roles, integration set and release from the real shared sources."""
    return read_tree(SHARED_ROOT, only=set())


def _role(rng: random.Random, n: int, shape: Shape) -> Role:
    modules = sorted(rng.sample(RECORD_MODULES, shape.modules), key=RECORD_MODULES.index)
    grants = {}
    for m in modules:
        acts = catalog.actions_for(m)
        grants[m] = tuple(sorted(rng.sample(acts, shape.actions), key=acts.index))
    scope = "assigned_customers" if rng.random() < 0.2 else "all"
    return Role(BOOKS, f"role_{n:02d}", f"Role {n}", scope,  # type: ignore[arg-type]
                rng.random() < 0.3, False, False, grants, _HERE)


def organization(rng: random.Random, org_id: str, tree: PolicyTree, shape: Shape) -> Organization:
    """One unified Books organization: custom roles, field rules and three approval types."""
    custom = [_role(rng, n, shape) for n in range(shape.roles)]
    roles = tuple(sorted([r for r in tree.predefined if r.product == BOOKS] + custom,
                         key=lambda r: (not r.predefined, r.id)))
    ids = [r.id for r in roles if not r.admin]
    fields = []
    for module in ("invoices", "estimates", "customers"):
        for name in ("discount", "notes", "tax_id"):
            per_role = {rid: rng.choice(catalog.FIELD_ACCESS) for rid in rng.sample(ids, 4)}
            fields.append(FieldRule(BOOKS, module, name, rng.choice(catalog.FIELD_ACCESS),  # type: ignore[arg-type]
                                    dict(sorted(per_role.items())), name == "tax_id", _HERE))
    approvers = [r.id for r in roles if "approve" in r.grants.get("estimates", ())]
    user = f"u001@{org_id}.example"
    approvals = (
        ModuleApproval(BOOKS, "estimates", "simple",
                       (Flow("simple", 1, None, "levels", (Level(tuple(approvers), ()),), _HERE),),
                       catalog.BLOCKED_UNTIL_APPROVED["estimates"], _HERE),
        ModuleApproval(BOOKS, "invoices", "custom", (
            Flow("large", 1, parse("total >= 10000"), "levels",
                 (Level((rng.choice(ids),), ()), Level((), (user,))), _HERE),
            Flow("medium", 2, parse("total >= 1000"), "levels",
                 (Level((rng.choice(ids),), ()),), _HERE),
            Flow("small", 3, parse("total < 1000"), "auto_approve", (), _HERE),
        ), catalog.BLOCKED_UNTIL_APPROVED["invoices"], _HERE),
        ModuleApproval(BOOKS, "purchase_orders", "multi_level", (
            Flow("levels", 1, None, "levels",
                 (Level((rng.choice(ids),), ()), Level((), (user,))), _HERE),
        ), catalog.BLOCKED_UNTIL_APPROVED["purchase_orders"], _HERE),
    )
    return Organization(
        id=org_id, name=org_id, data_centre="EU", edition="professional", products=(BOOKS,),
        mode="unified", integration_owner="u000",
        integration_user_quota=1000, allow_self_approval=rng.random() < 0.5, roles=roles,
        fields=tuple(fields), approvals=approvals, files=(f"orgs/{org_id}/organization.yaml",))


def write_orgs(out: Path, start: int, stop: int, seed: int = 1, shape: Shape = Shape(),
               name: str = "org") -> int:
    """Compile organizations `start`..`stop` into `out` (a generated folder)."""
    tree = shared_tree()
    (out / "orgs").mkdir(parents=True, exist_ok=True)
    (out / "model.conf").write_text(MODEL_CONF, encoding="utf-8")
    for n in range(start, stop):
        rng = random.Random(seed * 1_000_003 + n)
        org = organization(rng, org_name(n, name), tree, shape)
        for rel, data in compile_org(org, tree).files().items():
            (out / rel).write_bytes(data)
    return stop - start


def org_name(n: int, name: str = "org") -> str:
    return f"{name}-{n:05d}"


def role_ids(tree: PolicyTree, shape: Shape) -> list[str]:
    """Role ids of every synthetic organization: the predefined Books roles and role_NN."""
    return [r.id for r in tree.predefined if r.product == BOOKS] + [
        f"role_{n:02d}" for n in range(shape.roles)]


def directory_lists(org_id: str, roles: list[str], users: int, seed: int = 1
                    ) -> tuple[list[CrmUser], list[FinanceUser], list[IntegrationUser]]:
    """Users of one organization, as the store reads them: mostly finance users, plus
    disabled, inactive, location-limited, integration and not-migrated users."""
    rng = random.Random(f"{seed}:{org_id}")
    crm, fin, integ = [], [], []
    for n in range(users):
        uid = f"u{n:03d}"
        email = f"{uid}@{org_id}.example"
        crm.append(CrmUser(uid, email, uid, "disabled" if n % 50 == 49 else "active"))
        kind = n % 20
        if kind == 17:
            integ.append(IntegrationUser(uid, f"iu-{uid}"))
        elif kind == 18:
            continue  # not migrated: no finance account, no integration user
        else:
            locs = tuple(rng.sample(LOCATIONS, 2)) if rng.random() < 0.1 else ()
            status = "inactive" if rng.random() < 0.03 else "active"
            role = "admin" if n == 0 else rng.choice(roles)
            fin.append(FinanceUser(BOOKS, f"b-{uid}", email.upper() if n % 7 == 0 else email,
                                   uid, role, status, locs))  # type: ignore[arg-type]
    return crm, fin, integ


def directory(org_id: str, roles: list[str], users: int, seed: int = 1, revision: int = 1
              ) -> DirectorySnapshot:
    """A directory snapshot of one synthetic organization."""
    return DirectorySnapshot.build(org_id, revision, *directory_lists(org_id, roles, users, seed))


_STATUSES = ("", "draft", "pending_approval", "approved", "sent", "rejected", "paid")


def request(rng: random.Random, org_id: str, users: int) -> CheckRequest:
    """A random, valid Check request against one synthetic organization."""
    module = rng.choice(RECORD_MODULES)
    action = rng.choice(catalog.RECORD_ACTIONS)
    n = rng.randrange(users)
    uid = f"u{n:03d}"
    user = f"{uid}@{org_id}.example" if rng.random() < 0.1 else uid
    owner = uid if rng.random() < 0.5 else f"u{rng.randrange(users):03d}"
    record = Record(
        # Always a total: a Check without one, where an approval rule reads it, is refused
        # (DOMAIN §4.5), and the bench measures decisions, not refusals. Likewise a level:
        # an approve without one, in a rule of several levels, is refused.
        record_id="r1", owner=owner, total=rng.choice((50.0, 5000.0, 20000.0)),
        status=rng.choice(_STATUSES), approval_level=rng.choice((1, 1, 2)),
        created_by=uid if rng.random() < 0.3 else "u001",
        location=rng.choice(("", *LOCATIONS)),
    )
    writes: tuple[str, ...] = ()
    if rng.random() < 0.2:
        writes = (rng.choice(("discount", "notes", "tax_id", "memo")),)
    channel = Channel.DIRECT if rng.random() < 0.1 else Channel.CRM
    return CheckRequest(org_id, user, action, module, record=record, write_fields=writes,
                        channel=channel, explain=rng.random() < 0.05)
