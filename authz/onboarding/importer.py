"""Import an export folder: build the organization's sources and directory, check them as
the compiler and `directory import` would, then write them (or, with check, compare).

Everything is built and validated in memory first: bad input raises PolicyError naming
file, JSON path, what was found and what was expected, and nothing is written. Output is
deterministic (sorted users, catalogue-ordered modules and actions, no timestamps), so the
same exports give the same bytes and a change in Books shows as a `policy diff`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from authz import catalog, directory_file
from authz.directory_check import USERS_KEY, DirectoryPolicy
from authz.onboarding import roles as roles_mod
from authz.onboarding import settings, users
from authz.onboarding.exports import PREFIX, Exports, JsonReader
from authz.policy import compiler
from authz.policy.errors import Location, PolicyError, Problem
from authz.policy.sources import read_tree
from authz.policy.yamlsrc import parse

_ORG_KEYS = ("org_id", "name", "data_centre", "edition", "products", "mode",
             "integration_owner", "integration_user_quota")
DIRECTORY = "tests/directory.yaml"  # beside the org's test suites; `make serve` seeds it


@dataclass(frozen=True)
class Imported:
    """What an import writes: files by path relative to the policy root."""

    org_id: str
    files: dict[str, bytes]


def build(folder: Path, display: str | None = None) -> Imported:
    """The organization's sources and directory from an export folder (PolicyError if bad)."""
    ex = Exports(folder, display or str(folder))
    org_r = ex.reader("organization.json")
    crm_r = ex.reader("crm_users.json")
    ex.check()
    assert org_r is not None and crm_r is not None
    org = _organization(org_r)
    products = [p for p in catalog.PRODUCTS if p in org.get("products", [])]
    role_docs: dict[str, Any] = {}
    field_docs: dict[str, Any] = {}
    approval_docs: dict[str, Any] = {}
    directory: dict[str, Any] = {"org": org.get("id", ""), "crm_users": users.crm_users(crm_r)}
    notes: list[str] = []
    self_approval: list[tuple[JsonReader, bool]] = []
    for product in products:
        pre = PREFIX[product]
        users_r, roles_r = ex.reader(f"{pre}_users.json"), ex.reader(f"{pre}_roles.json")
        if users_r is None or roles_r is None:
            continue
        roles = roles_mod.read_roles(roles_r, product)
        notes.extend(roles.notes)
        if roles.documents:
            role_docs[product] = roles.documents
        ids = users.user_ids(users_r)
        owners = users.contact_owners(ex.reader(f"{pre}_contacts.json", required=False), ids)
        directory[USERS_KEY[product]] = users.finance_users(users_r, roles, owners)
        fields_r = ex.reader(f"{pre}_fields.json", required=False)
        if fields_r is not None and (fields := settings.read_fields(fields_r, roles)):
            field_docs[product] = fields
        approvals_r = ex.reader(f"{pre}_approvals.json", required=False)
        if approvals_r is not None:
            approvals, allow = settings.read_approvals(approvals_r, roles, ids)
            if approvals:
                approval_docs[product] = approvals
            if allow is not None:
                self_approval.append((approvals_r, allow))
    if len({a for _, a in self_approval}) > 1:
        r = self_approval[-1][0]
        r.fail(("allow_self_approval",), "products disagree on self-approval; the policy has one "
               "setting per organization", self_approval[-1][1], str(self_approval[0][1]).lower())
    org["approvals"] = {"allow_self_approval": self_approval[0][1] if self_approval else False}
    crm_ids = {u["id"] for u in directory["crm_users"]}
    if org.get("integration_owner") and org["integration_owner"] not in crm_ids:
        org_r.fail(("integration_owner",), "not a CRM user of crm_users.json",
                   org["integration_owner"], "a CRM user id")
    integ = users.integration_users(ex.reader("integration_users.json", required=False), crm_ids)
    if integ:
        directory["integration_users"] = integ
    ex.check()
    source = ex.display
    org_id = str(org["id"])
    base = f"orgs/{org_id}"
    files = {
        f"{base}/organization.yaml": _yaml(org, source, "settings", notes=()),
        f"{base}/roles.yaml": _yaml(role_docs, source, "custom roles", notes),
        f"{base}/fields.yaml": _yaml(field_docs, source, "field access per role", ()),
        f"{base}/approvals.yaml": _yaml(approval_docs, source, "approval settings", ()),
        f"{base}/{DIRECTORY}": _yaml(directory, source, "directory (users; data, not policy)", ()),
    }
    return Imported(org_id, files)


def _organization(r: JsonReader) -> dict[str, Any]:
    r.mapping((), _ORG_KEYS)
    org: dict[str, Any] = {"id": r.text(("org_id",)), "name": r.text(("name",)),
                           "data_centre": r.text(("data_centre",)),
                           "edition": r.text(("edition",))}
    products = r.strings(("products",))
    for k, p in enumerate(products):
        if p not in catalog.PRODUCTS:
            r.fail(("products", k), "unknown product", p, "books or subscriptions (Billing)")
    org["products"] = [p for p in catalog.PRODUCTS if p in products]
    org["mode"] = r.string(("mode",), False, choices=("legacy", "unified"), default="unified")
    org["integration_owner"] = r.text(("integration_owner",))
    org["integration_user_quota"] = r.integer(("integration_user_quota",), 1000)
    return org


def _yaml(doc: Any, source: str, what: str, notes: Any) -> bytes:
    header = [f"# Generated by `authz org import {source}`: {what}.",
              "# Do not edit: change it in Books (or the export) and import again."]
    header += [f"# Not mapped: {n}" for n in notes]
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=96,
                          default_flow_style=None) if doc else "{}\n"
    return ("\n".join(header) + "\n" + body).encode()


def validate(imp: Imported, policy_root: Path) -> None:
    """Compile the sources beside the shared ones and check the directory against them,
    as `policy compile` and `directory import` will (PolicyError naming the written file)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(policy_root / "shared", root / "shared")
        for rel, data in imp.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        tree = read_tree(root, only={imp.org_id})
        if not tree.orgs:
            raise PolicyError([Problem(Location(f"orgs/{imp.org_id}"), "no organization read")])
        manifest = compiler.manifest_of(tree.orgs[0], tree)
        rel = f"orgs/{imp.org_id}/{DIRECTORY}"
        directory_file.parse(parse(imp.files[rel].decode(), rel),
                             DirectoryPolicy.from_manifest(manifest))


def stale(imp: Imported, policy_root: Path) -> list[str]:
    """Files that differ from what the import would write (for `--check`)."""
    return [rel for rel, data in sorted(imp.files.items())
            if not (policy_root / rel).is_file() or (policy_root / rel).read_bytes() != data]


def write(imp: Imported, policy_root: Path) -> list[str]:
    """Write every file (each replaced atomically); returns those that changed."""
    changed = stale(imp, policy_root)
    for rel in changed:
        path = policy_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.import-{os.getpid()}")
        tmp.write_bytes(imp.files[rel])
        os.replace(tmp, path)
    return changed
