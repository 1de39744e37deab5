"""Read and validate the policy sources under a policy root.

Layout (paths relative to the root, normally `authz/policies/`):
  shared/predefined_roles.yaml   the suite's predefined roles (not editable per org)
  shared/integration_user.yaml   the versioned integration-user permission set
  shared/release.yaml            which organizations get the unified mode
  orgs/<org>/organization.yaml   settings; roles.yaml, fields.yaml, approvals.yaml beside it
Every problem is collected with its location; one PolicyError reports them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from authz import catalog
from authz.policy import criteria as crit
from authz.policy.errors import Location, PolicyError, Problem
from authz.policy.model import (
    Flow,
    IntegrationSet,
    Level,
    ModuleApproval,
    Organization,
    PolicyTree,
    Release,
    Role,
)
from authz.policy.reader import Reader, one_of
from authz.policy.role_sources import _ROLE_ID, _check_unique_roles, _order, _read_fields, _read_roles
from authz.policy.yamlsrc import Path_, Source, load

ORG_FILES = ("organization.yaml", "roles.yaml", "fields.yaml", "approvals.yaml")
_USER_ID = re.compile(r"^[0-9]{1,30}$")
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_LEVELS = 10


def _read_level(r: Reader, lp: Path_, product: str, roles: dict[str, Role]) -> Level:
    r.mapping(lp, ("roles", "users"))
    level_roles = r.strings((*lp, "roles"))
    users = r.strings((*lp, "users"))
    for k, rid in enumerate(level_roles):
        if f"{product}:{rid}" not in roles:
            r.fail((*lp, "roles", k), f"unknown approver role in {product}", rid,
                   "a role defined in roles.yaml or a predefined role")
    for k, email in enumerate(users):
        if not _EMAIL.match(email) and not _USER_ID.match(email):
            r.fail((*lp, "users", k), "approver user must be an e-mail address or the "
                   f"user's numeric {product} user id", email)
    if not level_roles and not users:
        r.fail(lp, "approval level has no approvers", None, "roles and/or users")
    return Level(tuple(sorted(set(level_roles))), tuple(sorted({u.casefold() for u in users})))


def _read_levels(r: Reader, path: Path_, product: str, roles: dict[str, Role]) -> tuple[Level, ...]:
    items = r.seq(path)
    if not items:
        r.fail(path, "at least one approval level is needed")
    if len(items) > MAX_LEVELS:
        r.fail(path, f"too many approval levels ({len(items)})", None, f"at most {MAX_LEVELS}")
    return tuple(_read_level(r, (*path, i), product, roles) for i in range(len(items)))


def _read_custom(r: Reader, ap: Path_, product: str, roles: dict[str, Role]) -> list[Flow]:
    flows: list[Flow] = []
    priorities: dict[int, str] = {}
    ids: set[str] = set()
    for i, _ in enumerate(r.seq((*ap, "rules"))):
        fp = (*ap, "rules", i)
        r.mapping(fp, ("id", "priority", "when", "levels", "outcome"))
        fid = r.string((*fp, "id"), pattern=_ROLE_ID)
        if fid in ids:
            r.fail((*fp, "id"), "duplicate approval rule id", fid)
        ids.add(fid)
        prio = r.integer((*fp, "priority"), default=i + 1, minimum=1)
        if prio in priorities:
            r.fail((*fp, "priority"), f"two approval rules share priority {prio}", prio,
                   f"a priority different from rule '{priorities[prio]}'")
        priorities[prio] = fid
        when = None
        text = r.get((*fp, "when"))
        if text is not None:
            try:
                when = crit.parse(str(text))
            except crit.CriteriaError as exc:
                r.fail((*fp, "when"), str(exc), text)
        outcome = r.string((*fp, "outcome"), required=False,
                           choices=("levels", "auto_approve", "auto_reject"), default="levels")
        has_levels = r.get((*fp, "levels")) is not None
        if outcome != "levels" and has_levels:
            r.fail((*fp, "levels"), f"rule with outcome {outcome} cannot have levels")
        levels = _read_levels(r, (*fp, "levels"), product, roles) if outcome == "levels" else ()
        flows.append(Flow(fid, prio, when, cast(Any, outcome), levels, r.src.at(fp)))
    if not flows:
        r.fail((*ap, "rules"), "custom approval needs at least one rule")
    flows.sort(key=lambda f: f.priority)
    # A rule is unreachable when rules of higher priority already accept every total it does.
    earlier: list[crit.Interval] = []
    for flow in flows:
        iv = flow.when.interval if flow.when else crit.Interval()
        if flow.when and flow.when.interval.empty():
            r.problems.append(Problem(flow.where, f"approval rule '{flow.id}' can never match",
                                      flow.when.text, "a satisfiable criterion"))
        elif crit.covered(iv, earlier):
            r.problems.append(Problem(flow.where, f"approval rule '{flow.id}' is unreachable: "
                                      "rules of higher priority match every record it matches",
                                      flow.when.text if flow.when else "(no criteria)",
                                      "criteria not covered by earlier rules"))
        earlier.append(iv)
    return flows


def _read_approvals(r: Reader, products: tuple[str, ...], roles: dict[str, Role]) -> list[ModuleApproval]:
    out = []
    for product, _ in r.mapping((), catalog.PRODUCTS).items():
        if product not in products:
            r.fail((product,), "product is not connected to this organization", product,
                   one_of(products))
            continue
        for module, _ in r.mapping((product,)).items():
            ap = (product, module)
            if module not in catalog.MODULES[product]:
                r.fail(ap, f"unknown {product} module", module, one_of(catalog.MODULES[product]))
                continue
            r.mapping(ap, ("type", "levels", "rules", "blocked_until_approved"))
            kind = r.string((*ap, "type"), choices=("none", "simple", "multi_level", "custom"),
                            default="none")
            flows: list[Flow] = []
            if kind == "simple":
                approvers = tuple(sorted(rid for key, role in roles.items()
                                         if role.product == product
                                         and "approve" in role.grants.get(module, ())
                                         for rid in [role.id]))
                flows = [Flow("simple", 1, None, "levels", (Level(approvers, ()),), r.src.at(ap))]
            elif kind == "multi_level":
                flows = [Flow("levels", 1, None, "levels",
                              _read_levels(r, (*ap, "levels"), product, roles), r.src.at(ap))]
            elif kind == "custom":
                flows = _read_custom(r, ap, product, roles)
            for extra in ("levels", "rules"):
                wanted = {"levels": "multi_level", "rules": "custom"}[extra]
                if r.get((*ap, extra)) is not None and kind != wanted:
                    r.fail((*ap, extra), f"'{extra}' only applies to type {wanted}", kind)
            blocked = r.get((*ap, "blocked_until_approved"))
            if blocked is None:
                blocked_actions = catalog.BLOCKED_UNTIL_APPROVED.get(module, ())
            else:
                blocked_list = r.strings((*ap, "blocked_until_approved"))
                for k, a in enumerate(blocked_list):
                    if a not in catalog.actions_for(module):
                        r.fail((*ap, "blocked_until_approved", k), "unknown action", a,
                               one_of(catalog.actions_for(module)))
                blocked_actions = _order([a for a in blocked_list
                                          if a in catalog.actions_for(module)],
                                         catalog.actions_for(module))
            out.append(ModuleApproval(product, module, cast(Any, kind), tuple(flows),
                                      tuple(blocked_actions), r.src.at(ap)))
    return out


def _read_org(
    root: Path, folder: Path, predefined: dict[str, Role], problems: list[Problem]
) -> Organization | None:
    rel = folder.relative_to(root).as_posix()
    files = tuple(f"{rel}/{n}" for n in ORG_FILES if (folder / n).exists())
    srcs: dict[str, Source] = {}
    for name in ORG_FILES:
        path = folder / name
        if not path.exists():
            if name == "organization.yaml":
                problems.append(Problem(Location(f"{rel}/{name}"), "missing organization file"))
                return None
            continue
        try:
            srcs[name] = load(path, f"{rel}/{name}")
        except PolicyError as exc:
            problems.extend(exc.problems)
    if "organization.yaml" not in srcs:
        return None
    o = Reader(srcs["organization.yaml"], problems)
    # `unified_since` is accepted for older revisions (policy diff) but never read: the server
    # records the day the release reaches the organization (DOMAIN §6).
    o.mapping((), ("id", "name", "data_centre", "edition", "products", "mode", "unified_since",
                   "integration_owner", "integration_user_quota", "approvals"))
    org_id = o.string(("id",), pattern=_ORG_ID)
    if org_id and org_id != folder.name:
        o.fail(("id",), "organization id must match its folder name", org_id, folder.name)
    products = o.strings(("products",))
    for i, p in enumerate(products):
        if p not in catalog.PRODUCTS:
            o.fail(("products", i), "unknown product", p, one_of(catalog.PRODUCTS))
    if not products:
        o.fail(("products",), "an organization connects at least one finance product")
    connected = tuple(p for p in catalog.PRODUCTS if p in products)
    o.mapping(("approvals",), ("allow_self_approval",))
    roles = [r for r in predefined.values() if r.product in connected]
    if "roles.yaml" in srcs:
        rr = Reader(srcs["roles.yaml"], problems)
        for product in rr.mapping((), catalog.PRODUCTS):
            if product not in connected:
                rr.fail((product,), "product is not connected to this organization", product,
                        one_of(connected))
                continue
            custom = _read_roles(rr, product, (product,), predefined=False)
            _check_unique_roles(rr, custom, predefined)
            roles.extend(c for c in custom if c.key not in predefined)
    by_key = {r.key: r for r in roles}
    fields = _read_fields(Reader(srcs["fields.yaml"], problems), connected, by_key) \
        if "fields.yaml" in srcs else []
    approvals = _read_approvals(Reader(srcs["approvals.yaml"], problems), connected, by_key) \
        if "approvals.yaml" in srcs else []
    return Organization(
        id=org_id,
        name=o.string(("name",), default=org_id),
        data_centre=o.string(("data_centre",), choices=catalog.DATA_CENTRES),
        edition=o.string(("edition",), choices=catalog.EDITIONS),
        products=connected,
        mode=cast(Any, o.string(("mode",), required=False, choices=("legacy", "unified"),
                                default="legacy")),
        integration_owner=o.string(("integration_owner",)),
        integration_user_quota=o.integer(("integration_user_quota",), default=1000, minimum=0),
        allow_self_approval=o.boolean(("approvals", "allow_self_approval")),
        roles=tuple(sorted(roles, key=lambda r: (catalog.PRODUCTS.index(r.product),
                                                 not r.predefined, r.id))),
        fields=tuple(fields),
        approvals=tuple(approvals),
        files=files,
    )


def _read_integration(src: Source, problems: list[Problem]) -> IntegrationSet:
    r = Reader(src, problems)
    r.mapping((), ("version", "effective", "summary", "permissions", "history"))
    grants: dict[str, dict[str, tuple[str, ...]]] = {}
    for product in r.mapping(("permissions",), catalog.PRODUCTS):
        for module in r.mapping(("permissions", product)):
            if module not in catalog.MODULES.get(product, ()):
                r.fail(("permissions", product, module), f"unknown {product} module", module)
                continue
            acts = r.strings(("permissions", product, module))
            for k, a in enumerate(acts):
                if a in catalog.APPROVAL_ACTIONS or a in ("delete", "delete_approved"):
                    r.fail(("permissions", product, module, k),
                           "integration users are never granted delete or approval actions", a)
                elif a not in catalog.actions_for(module):
                    r.fail(("permissions", product, module, k), "unknown action", a)
            ok = [a for a in acts if a in catalog.actions_for(module)
                  and a not in catalog.APPROVAL_ACTIONS and a not in ("delete", "delete_approved")]
            grants.setdefault(product, {})[module] = _order(ok, catalog.actions_for(module))
    return IntegrationSet(
        version=r.integer(("version",), default=0, minimum=1),
        effective=r.string(("effective",)),
        summary=r.string(("summary",), required=False),
        grants=grants,
    )


def _read_release(src: Source, problems: list[Problem]) -> Release:
    r = Reader(src, problems)
    r.mapping((), ("default", "data_centres"))
    default = r.string(("default",), choices=("available", "unavailable"), default="available")
    by_dc: dict[str, tuple[str, ...]] = {}
    for dc, _ in r.mapping(("data_centres",)).items():
        if dc not in catalog.DATA_CENTRES:
            r.fail(("data_centres", dc), "unknown data centre", dc, one_of(catalog.DATA_CENTRES))
        r.mapping(("data_centres", dc), ("available_editions",))
        eds = r.strings(("data_centres", dc, "available_editions"))
        for k, e in enumerate(eds):
            if e not in catalog.EDITIONS:
                r.fail(("data_centres", dc, "available_editions", k), "unknown edition", e,
                       one_of(catalog.EDITIONS))
        by_dc[dc] = tuple(eds)
    return Release(default == "available", by_dc)


def read_tree(root: Path, only: set[str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> PolicyTree:
    """Read and validate every source under `root`; raise PolicyError listing all problems."""
    problems: list[Problem] = []
    shared = root / "shared"
    names = ("predefined_roles.yaml", "integration_user.yaml", "release.yaml")
    srcs: dict[str, Source] = {}
    for name in names:
        try:
            srcs[name] = load(shared / name, f"shared/{name}")
        except PolicyError as exc:
            problems.extend(exc.problems)
    if problems:
        raise PolicyError(problems)
    pr = Reader(srcs["predefined_roles.yaml"], problems)
    predefined: dict[str, Role] = {}
    for product in pr.mapping((), catalog.PRODUCTS):
        for role in _read_roles(pr, product, (product,), predefined=True):
            predefined[role.key] = role
    integration = _read_integration(srcs["integration_user.yaml"], problems)
    release = _read_release(srcs["release.yaml"], problems)
    orgs = []
    org_root = root / "orgs"
    folders = sorted(p for p in org_root.iterdir() if p.is_dir()) if org_root.is_dir() else []
    if only is not None:
        folders = [f for f in folders if f.name in only]
    for n, folder in enumerate(folders, start=1):
        org = _read_org(root, folder, predefined, problems)
        if progress:
            progress(n, len(folders))
        if org is not None:
            orgs.append(org)
    if problems:
        raise PolicyError(problems)
    return PolicyTree(str(root), tuple(predefined.values()), integration, release, tuple(orgs),
                      tuple(f"shared/{n}" for n in names))
