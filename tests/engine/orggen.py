"""Hypothesis strategies: random organizations as YAML sources, directories, requests.

Organizations are written as the source files a person would write (roles, fields,
approvals with simple / multi_level / custom flows), so the real reader and compiler
produce the policy under test. Custom approval criteria never overlap (the reader
rejects unreachable rules), and named approvers are drawn from the directory's
e-mail addresses, integration users' included.
"""

from __future__ import annotations

import itertools
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from authz import catalog
from authz.decision import Channel, CheckRequest, Record
from authz.directory import CrmUser, DirectorySnapshot, FinanceUser, IntegrationUser
from authz.policy.compiler import render, write_atomic
from authz.policy.sources import read_tree

SHARED = Path(__file__).resolve().parents[2] / "authz" / "policies" / "shared"
PREDEFINED_NON_ADMIN = {catalog.BOOKS: ["staff", "staff_assigned", "timesheet_staff"],
                        catalog.SUBSCRIPTIONS: ["staff"]}
FIELDS = ("discount", "notes", "tax_id", "cost")
USERS = tuple(f"u{n}" for n in range(8))
LOCATIONS = ("berlin", "paris")
CUSTOMERS = ("c-1", "c-2", "c-3")  # customer ids: assigned to users, named by records
ORG_ID = "rand-org"


def email(uid: str) -> str:
    return f"{uid}@rand.example"


def finance_id(uid: str) -> str:
    """A user's numeric id in each finance product (as Books ids are; approvers may be named by it)."""
    return str(1000 + USERS.index(uid))


@dataclass(frozen=True)
class OrgSpec:
    """The YAML documents of one organization, keyed by file name."""

    files: dict[str, Any]
    products: tuple[str, ...]
    custom_roles: dict[str, tuple[str, ...]]  # product -> custom role ids


def _subset(draw: st.DrawFn, items: tuple[str, ...] | list[str], lo: int, hi: int) -> list[str]:
    picked: list[str] = draw(st.lists(st.sampled_from(list(items)), min_size=lo, max_size=hi,
                                      unique=True))
    return picked


def _role(draw: st.DrawFn, product: str, rid: str) -> dict[str, Any]:
    perms: dict[str, Any] = {}
    for module in _subset(draw, catalog.MODULES[product], 1, 5):
        perms[module] = "*" if draw(st.booleans()) and draw(st.booleans()) else \
            _subset(draw, catalog.actions_for(module), 1, 8)
    return {"id": rid, "name": rid.upper(), "scope": draw(st.sampled_from(
        ["all", "assigned_customers"])), "protected_data": draw(st.booleans()),
        "permissions": perms}


def _fields(draw: st.DrawFn, product: str, roles: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for module in _subset(draw, catalog.MODULES[product], 1, 3):
        rules = []
        for name in _subset(draw, FIELDS, 1, 3):
            per_role = {r: draw(st.sampled_from(catalog.FIELD_ACCESS))
                        for r in _subset(draw, roles, 0, 3)}
            rules.append({"field": name, "default": draw(st.sampled_from(catalog.FIELD_ACCESS)),
                          "roles": per_role, "personal_data": draw(st.booleans())})
        out[module] = rules
    return out


def _levels(draw: st.DrawFn, roles: list[str]) -> list[dict[str, Any]]:
    levels = []
    for _ in range(draw(st.integers(1, 3))):
        lv: dict[str, Any] = {"roles": _subset(draw, roles, 0, 2)}
        users = _subset(draw, USERS, 0 if lv["roles"] else 1, 2)
        if users:
            lv["users"] = [draw(st.sampled_from([email(u), email(u).upper(), finance_id(u)]))
                           for u in users]
        levels.append(lv)
    return levels


def _custom_rules(draw: st.DrawFn, roles: list[str]) -> list[dict[str, Any]]:
    cuts = sorted(draw(st.lists(st.sampled_from([100, 1000, 5000]), min_size=1, max_size=2,
                                unique=True)))
    bounds = [None, *cuts, None]
    segments = []
    for lo, hi in itertools.pairwise(bounds):
        terms = ([f"total >= {lo}"] if lo is not None else []) + \
            ([f"total < {hi}"] if hi is not None else [])
        segments.append(" and ".join(terms))
    keep = _subset(draw, segments, 1, len(segments))
    priorities = draw(st.permutations(list(range(1, len(keep) + 1))))
    rules = []
    for n, (when, prio) in enumerate(zip(keep, priorities, strict=True)):
        outcome = draw(st.sampled_from(["levels", "levels", "auto_approve", "auto_reject"]))
        rule: dict[str, Any] = {"id": f"rule{n}", "priority": prio, "when": when,
                                "outcome": outcome}
        if outcome == "levels":
            rule["levels"] = _levels(draw, roles)
        rules.append(rule)
    return rules


def _approvals(draw: st.DrawFn, product: str, roles: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    record_modules = [m for m in catalog.MODULES[product]
                      if catalog.actions_for(m) == catalog.RECORD_ACTIONS]
    for module in _subset(draw, record_modules, 1, 3):
        kind = draw(st.sampled_from(["custom", "multi_level", "simple", "none"]))
        cfg: dict[str, Any] = {"type": kind}
        if kind == "multi_level":
            cfg["levels"] = _levels(draw, roles)
        elif kind == "custom":
            cfg["rules"] = _custom_rules(draw, roles)
        if draw(st.booleans()):
            cfg["blocked_until_approved"] = _subset(draw, catalog.RECORD_ACTIONS, 0, 4)
        out[module] = cfg
    return out


@st.composite
def organizations(draw: st.DrawFn) -> OrgSpec:
    """A valid organization: random custom roles, field rules and approval flows."""
    picked = _subset(draw, catalog.PRODUCTS, 1, 2)
    products = tuple(p for p in catalog.PRODUCTS if p in picked)
    roles_doc: dict[str, Any] = {}
    fields_doc: dict[str, Any] = {}
    approvals_doc: dict[str, Any] = {}
    custom: dict[str, tuple[str, ...]] = {}
    for product in products:
        ids = tuple(f"c{n}" for n in range(draw(st.integers(0, 4))))
        custom[product] = ids
        if ids:
            roles_doc[product] = [_role(draw, product, rid) for rid in ids]
        non_admin = PREDEFINED_NON_ADMIN[product] + list(ids)
        fields_doc[product] = _fields(draw, product, non_admin)
        approvals_doc[product] = _approvals(draw, product, ["admin", *non_admin])
    organization = {
        "id": ORG_ID, "name": "Random", "data_centre": "EU", "edition": "standard",
        "products": list(products), "mode": "unified",  # legacy never asks the view
        "integration_owner": "u0",
        "approvals": {"allow_self_approval": draw(st.booleans())},
    }
    files = {"organization.yaml": organization, "roles.yaml": roles_doc,
             "fields.yaml": fields_doc, "approvals.yaml": approvals_doc}
    return OrgSpec(files, products, custom)


def compile_into(root: Path, spec: OrgSpec) -> Path:
    """Write the sources under a fresh policy root, compile them; returns `generated/`."""
    shutil.copytree(SHARED, root / "shared")
    folder = root / "orgs" / ORG_ID
    folder.mkdir(parents=True)
    for name, doc in spec.files.items():
        (folder / name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    write_atomic(render(read_tree(root)), root / "generated")
    return root / "generated"


def directories(spec: OrgSpec) -> st.SearchStrategy[DirectorySnapshot]:
    """CRM users, finance users (some inactive, some limited to locations), integration users."""
    return st.integers(0, 2**32 - 1).map(lambda seed: _directory(random.Random(seed), spec))


def _directory(rng: random.Random, spec: OrgSpec) -> DirectorySnapshot:
    crm, fin, integ = [], [], []
    for uid in USERS:
        status = "disabled" if rng.random() < 0.1 else "active"
        crm.append(CrmUser(uid, email(uid), uid, status))  # type: ignore[arg-type]
        kind = rng.choice(["finance"] * 6 + ["integration", "integration", "none"])
        if kind == "integration":
            integ.append(IntegrationUser(uid, f"iu-{uid}"))
        for product in catalog.PRODUCTS:  # accounts in unconnected products are ignored
            if kind != "finance" or (product != spec.products[0] and rng.random() < 0.5):
                continue
            roles = ["admin", *PREDEFINED_NON_ADMIN[product], *spec.custom_roles.get(product, ())]
            fin.append(FinanceUser(
                product, finance_id(uid), email(uid).upper() if rng.random() < 0.3
                else email(uid), uid, rng.choice(roles),
                "inactive" if rng.random() < 0.1 else "active",
                (rng.choice(LOCATIONS),) if rng.random() < 0.15 else (),
                frozenset(rng.sample(CUSTOMERS, rng.randrange(3)))))
    return DirectorySnapshot.build(ORG_ID, 7, crm, fin, integ)


def _interesting(spec: OrgSpec) -> list[tuple[str, str]]:
    """(product, module) pairs the organization's own sources mention."""
    pairs = {(p, m) for name in ("roles.yaml", "fields.yaml", "approvals.yaml")
             for p, doc in spec.files[name].items()
             for m in (doc if isinstance(doc, dict) else
                       [k for role in doc for k in role["permissions"]])}
    pairs |= {(p, m) for p in spec.products for m in ("invoices", "estimates", "timesheets")
              if m in catalog.MODULES[p]}
    return sorted(pairs)


def _approval_pairs(spec: OrgSpec) -> dict[tuple[str, str], list[str]]:
    """Modules with approval settings -> the user ids named as approvers there."""
    out: dict[tuple[str, str], list[str]] = {}
    for p, doc in spec.files["approvals.yaml"].items():
        for m, cfg in doc.items():
            levels = cfg.get("levels", []) + [lv for r in cfg.get("rules", [])
                                              for lv in r.get("levels", [])]
            out[(p, m)] = sorted({u.split("@")[0].lower() if "@" in u else USERS[int(u) - 1000]
                                  for lv in levels for u in lv.get("users", [])})
    return out


_HOT_ACTIONS = ("create", "edit", "view", "approve", "final_approve", "reject", "delete",
                "email", "mark_as_sent", "convert_to_invoice")


def requests(spec: OrgSpec) -> st.SearchStrategy[CheckRequest]:
    """Valid Check requests, mostly on modules the organization configures.

    Drawn from a seeded `random.Random`: hypothesis' own choices lean towards their
    first and smallest values, which would make most requests stop at "unknown user".
    """
    pairs, approvals = _interesting(spec), _approval_pairs(spec)
    fields = [(p, m) for p, doc in spec.files["fields.yaml"].items() for m in doc]
    return st.integers(0, 2**32 - 1).map(
        lambda seed: _request(random.Random(seed), pairs + fields * 2, approvals))


def _request(rng: random.Random, pairs: list[tuple[str, str]],
             approvals: dict[tuple[str, str], list[str]]) -> CheckRequest:
    roll = rng.random()
    status = rng.choice(["", "draft", "pending_approval", "pending_approval", "rejected",
                         "approved", "sent", "paid"])
    uid = rng.choice(USERS)
    if roll < 0.4 and approvals:
        product, module = rng.choice(sorted(approvals))
        action = rng.choice(["create", "edit", "approve", "approve", "reject", "final_approve",
                             *catalog.actions_for(module)])
        if action in ("approve", "reject", "final_approve") and rng.random() < 0.7:
            status = "pending_approval"
        if approvals[(product, module)] and rng.random() < 0.5:
            uid = rng.choice(approvals[(product, module)])
    elif roll < 0.85:
        product, module = rng.choice(pairs)
        hot = [a for a in _HOT_ACTIONS if a in catalog.actions_for(module)]
        action = rng.choice(hot + list(catalog.actions_for(module)))
    else:
        module = rng.choice(sorted(catalog.ALL_MODULES))
        product = rng.choice(["", *catalog.products_with(module)])
        action = rng.choice(catalog.actions_for(module))
    roll = rng.random()
    user = uid if roll < 0.85 else email(uid).upper() if roll < 0.95 else \
        rng.choice(["ghost", "ghost@rand.example"])
    anyone = [uid, uid, *USERS, ""]
    record = Record(
        owner=rng.choice(anyone), customer_id=rng.choice(["", "", *CUSTOMERS]),
        total=rng.choice([None, 0.0, 99.5, 100.0, 1000.0, 4999.0, 5000.0, 7500.0]),
        status=status,
        approval_level=rng.randrange(5),
        # the creator by any identity: CRM id, Books / Subscriptions / integration user id,
        # e-mail in another case (self-approval must see them all)
        created_by=rng.choice([*anyone, f"b-{uid}", f"s-{uid}", f"iu-{uid}",
                               email(uid).upper()]),
        location=rng.choice(["", "", *LOCATIONS]))
    return CheckRequest(
        ORG_ID, user, action, module, product=rng.choice([product, ""]), record=record,
        read_fields=tuple(rng.sample(FIELDS, rng.randrange(3))),
        write_fields=tuple(rng.sample((*FIELDS, "memo"), rng.choice((0, 1, 1, 2)))),
        channel=Channel.DIRECT if rng.random() < 0.2 else Channel.CRM,
        explain=rng.random() < 0.3)
