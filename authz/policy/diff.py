"""What a policy change does: grants, field outcomes and approval outcomes that change,
per organization, role and module. Reviewers read this on a pull request.

Both sides are compiled, so the diff is of outcomes (what users may do), not of YAML
text: moving a role between files or reordering lines shows no change.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

from authz.policy import compiler
from authz.policy.model import Organization, PolicyTree
from authz.policy.sources import read_tree


def _outcomes(org: Organization, tree: PolicyTree) -> dict[str, Any]:
    grants: dict[tuple[str, str], set[str]] = defaultdict(set)
    fields: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    approvers: dict[tuple[str, str], set[str]] = defaultdict(set)
    blocked: dict[str, set[str]] = defaultdict(set)
    for line in compiler.policy_lines(org, tree):
        kind = line[0]
        if kind == "p":
            scope = "" if line[5] == "all" else f" ({line[5]})"
            chan = "" if line[6] == "*" else f" [{line[6]} only]"
            grants[(line[1], f"{line[2]}/{line[3]}")].add(f"{line[4]}{scope}{chan}")
        elif kind == "p2":
            fields[(line[1], f"{line[2]}/{line[3]}")][line[4]] = line[5]
        elif kind == "p3":
            approvers[(f"{line[2]}/{line[3]}", line[4])].add(f"level {line[5]}: {line[1]}"
                                                              + _role_name(org, line[1]))
        elif kind == "p4":
            blocked[f"{line[1]}/{line[2]}"].add(line[3])
    manifest = compiler.manifest_of(org, tree)
    rules = {(k, r["id"]): f"priority {r['priority']}, when {r['when'] or 'always'}, "
             f"{r['outcome']}" + (f" ({r['levels']} levels)" if r["outcome"] == "levels" else "")
             for k, cfg in manifest["approvals"].items() for r in cfg["rules"]}
    types = {k: cfg["type"] for k, cfg in manifest["approvals"].items()}
    settings = {k: manifest[k] for k in ("effective_mode", "products", "integration_user_quota",
                                          "allow_self_approval", "integration_owner")}
    names = {k: r["name"] for k, r in manifest["roles"].items() if k.split(":")[1].isdigit()}
    return {"grants": grants, "fields": fields, "approvers": approvers, "blocked": blocked,
            "rules": rules, "types": types, "settings": settings, "names": names}


def _named(subject: str, x: dict[str, Any], y: dict[str, Any]) -> str:
    """A role subject with its name when the id does not say it (Books' numeric role ids)."""
    name = y["names"].get(subject) or x["names"].get(subject)
    return f"{subject} ({name})" if name else subject


def _role_name(org: Organization, subject: str) -> str:
    """` (name)` after a role subject whose id is a finance product's number."""
    role = next((r for r in org.roles if r.key == subject and r.id.isdigit()), None)
    return f" ({role.name})" if role else ""


def diff_trees(a: PolicyTree, b: PolicyTree) -> list[str]:
    """Readable lines describing how decisions change from tree `a` to tree `b`."""
    out: list[str] = []
    orgs_a = {o.id: o for o in a.orgs}
    orgs_b = {o.id: o for o in b.orgs}
    for org_id in sorted(orgs_a.keys() | orgs_b.keys()):
        if org_id not in orgs_b:
            out.append(f"organization {org_id}: removed")
            continue
        if org_id not in orgs_a:
            out.append(f"organization {org_id}: added")
            continue
        lines = _diff_org(_outcomes(orgs_a[org_id], a), _outcomes(orgs_b[org_id], b))
        if lines:
            out.append(f"organization {org_id}:")
            out.extend(f"  {line}" for line in lines)
    return out


def _diff_org(x: dict[str, Any], y: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in sorted(x["settings"].keys()):
        if x["settings"][key] != y["settings"][key]:
            out.append(f"setting {key}: {x['settings'][key]} -> {y['settings'][key]}")
    for role, module in sorted(x["grants"].keys() | y["grants"].keys()):
        before, after = x["grants"].get((role, module), set()), y["grants"].get((role, module), set())
        if added := sorted(after - before):
            out.append(f"role {_named(role, x, y)} on {module}: + {', '.join(added)}")
        if removed := sorted(before - after):
            out.append(f"role {_named(role, x, y)} on {module}: - {', '.join(removed)}")
    for role, module in sorted(x["fields"].keys() | y["fields"].keys()):
        before, after = x["fields"].get((role, module), {}), y["fields"].get((role, module), {})
        for f in sorted(before.keys() | after.keys()):
            if before.get(f) != after.get(f):
                out.append(f"role {_named(role, x, y)} field {module}.{f}: "
                           f"{before.get(f, 'unrestricted')} -> {after.get(f, 'unrestricted')}")
    for module in sorted(x["types"].keys() | y["types"].keys()):
        if x["types"].get(module) != y["types"].get(module):
            out.append(f"approval on {module}: {x['types'].get(module, 'none')} -> "
                       f"{y['types'].get(module, 'none')}")
    for key in sorted(x["rules"].keys() | y["rules"].keys()):
        if x["rules"].get(key) != y["rules"].get(key):
            out.append(f"approval rule {key[0]} {key[1]}: {x['rules'].get(key, 'absent')} -> "
                       f"{y['rules'].get(key, 'absent')}")
    for key in sorted(x["approvers"].keys() | y["approvers"].keys()):
        before, after = x["approvers"].get(key, set()), y["approvers"].get(key, set())
        for a in sorted(after - before):
            out.append(f"approvers of {key[0]} rule {key[1]}: + {a}")
        for a in sorted(before - after):
            out.append(f"approvers of {key[0]} rule {key[1]}: - {a}")
    for module in sorted(x["blocked"].keys() | y["blocked"].keys()):
        before, after = x["blocked"].get(module, set()), y["blocked"].get(module, set())
        if before != after:
            out.append(f"blocked until approved on {module}: {sorted(before)} -> {sorted(after)}")
    return out


def resolve_tree(spec: str, default_root: Path, tmp: Path) -> PolicyTree:
    """A policy root: a folder, or a git revision whose policy folder is extracted to `tmp`."""
    path = Path(spec)
    if path.is_dir():
        return read_tree(path)
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                         cwd=default_root, check=True).stdout.strip()
    rel = default_root.resolve().relative_to(Path(top).resolve()).as_posix()
    archive = subprocess.run(["git", "archive", "--format=tar", spec, rel], capture_output=True,
                             cwd=top)
    if archive.returncode != 0:
        raise ValueError(f"'{spec}' is neither a folder nor a git revision with {rel}: "
                         + archive.stderr.decode(errors="replace").strip())
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    return read_tree(tmp / rel)


def diff_specs(a: str, b: str, default_root: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as ta, tempfile.TemporaryDirectory() as tb:
        return diff_trees(resolve_tree(a, default_root, Path(ta)),
                          resolve_tree(b, default_root, Path(tb)))
