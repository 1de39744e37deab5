"""Reading roles.yaml and fields.yaml: roles per product with their actions, scope and
protected data; field access per role."""

from __future__ import annotations

import re
from typing import Any, cast

from authz import catalog
from authz.policy.errors import Location, Problem
from authz.policy.model import (
    Access,
    FieldRule,
    Role,
)
from authz.policy.reader import Reader, one_of
from authz.policy.yamlsrc import Path_

_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Role and approval rule ids: our slugs, or a finance product's own numeric ids (roles
#: imported from Books keep Books' role ids; names are what messages show).
_ROLE_ID = re.compile(r"^(?:[a-z][a-z0-9_]{0,62}|[0-9]{1,30})$")


def _order(items: list[str], catalogue: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(items), key=catalogue.index))


def _read_roles(r: Reader, product: str, path: Path_, predefined: bool) -> list[Role]:
    roles = []
    modules = catalog.MODULES[product]
    for i, _ in enumerate(r.seq(path)):
        rp = (*path, i)
        r.mapping(rp, ("id", "name", "scope", "protected_data", "admin", "permissions",
                       "exclude_modules"))
        rid = r.string((*rp, "id"), pattern=_ROLE_ID)
        name = r.string((*rp, "name"), default=rid)
        scope = r.string((*rp, "scope"), required=False, choices=("all", "assigned_customers"),
                         default="all")
        admin = r.boolean((*rp, "admin"))
        if admin and not predefined:
            r.fail((*rp, "admin"), "only predefined roles are admin roles", True)
            admin = False
        exclude = r.strings((*rp, "exclude_modules"))
        for j, m in enumerate(exclude):
            if m not in modules:
                r.fail((*rp, "exclude_modules", j), f"unknown {product} module", m, one_of(modules))
        grants: dict[str, list[str]] = {}
        grants_where: dict[str, Location] = {}
        perms = r.mapping((*rp, "permissions"))
        for module, actions in perms.items():
            pp = (*rp, "permissions", module)
            targets = [m for m in modules if m not in exclude] if module == "*" else [module]
            for m in targets:  # a module's own entry wins over "*"
                if module != "*" or m not in grants_where:
                    grants_where[m] = r.src.at(pp)
            if module != "*" and module not in modules:
                r.fail(pp, f"unknown {product} module", module, one_of(modules))
                continue
            if actions == "*":
                for m in targets:
                    grants.setdefault(m, []).extend(catalog.actions_for(m))
                continue
            if not isinstance(actions, list):
                r.fail(pp, "expected a list of actions or '*'", actions)
                continue
            for k, action in enumerate(actions):
                if not isinstance(action, str) or action not in catalog.ALL_ACTIONS:
                    r.fail((*pp, k), "unknown action", action, one_of(catalog.RECORD_ACTIONS))
                    continue
                for m in targets:
                    if action in catalog.actions_for(m):
                        grants.setdefault(m, []).append(action)
                    elif module != "*":
                        r.fail((*pp, k), f"action not available on module {m}", action,
                               one_of(catalog.actions_for(m)))
        protected = r.boolean((*rp, "protected_data"))
        if protected:
            for m, acts in grants.items():
                if "view" in acts and "view_protected_data" in catalog.actions_for(m):
                    acts.append("view_protected_data")
        ordered = {
            m: _order(acts, catalog.actions_for(m))
            for m, acts in sorted(grants.items(), key=lambda kv: modules.index(kv[0]))
        }
        roles.append(Role(product, rid, name, cast(Any, scope), protected, admin, predefined,
                          ordered, r.src.at(rp), grants_where))
    return roles


def _check_unique_roles(r: Reader, roles: list[Role], predefined: dict[str, Role]) -> None:
    seen: dict[str, Role] = {}
    for role in roles:
        if role.key in predefined:
            r.problems.append(Problem(role.where, f"role '{role.id}' redefines a predefined "
                                      f"{role.product} role, which cannot be edited", role.id,
                                      "a new role id"))
        elif role.key in seen:
            r.problems.append(Problem(role.where, f"duplicate role '{role.id}' in {role.product}",
                                      role.id, f"ids unique (first at {seen[role.key].where})"))
        else:
            seen[role.key] = role


def _read_fields(r: Reader, products: tuple[str, ...], roles: dict[str, Role]) -> list[FieldRule]:
    rules = []
    access = catalog.FIELD_ACCESS
    for product in r.mapping((), catalog.PRODUCTS):
        if product not in products:
            r.fail((product,), "product is not connected to this organization", product,
                   one_of(products))
            continue
        for module, _ in r.mapping((product,)).items():
            if module not in catalog.MODULES[product]:
                r.fail((product, module), f"unknown {product} module", module,
                       one_of(catalog.MODULES[product]))
                continue
            seen: set[str] = set()
            for i, _ in enumerate(r.seq((product, module))):
                fp = (product, module, i)
                r.mapping(fp, ("field", "default", "roles", "personal_data"))
                name = r.string((*fp, "field"), pattern=_ID)
                if name in seen:
                    r.fail((*fp, "field"), f"duplicate field rule for '{name}'", name)
                seen.add(name)
                default = r.string((*fp, "default"), required=False, choices=access,
                                   default="read_write")
                per_role: dict[str, Access] = {}
                for role_id, acc in r.mapping((*fp, "roles")).items():
                    if f"{product}:{role_id}" not in roles:
                        r.fail((*fp, "roles", role_id), f"unknown {product} role", role_id,
                               "a role defined in roles.yaml or a predefined role")
                    elif roles[f"{product}:{role_id}"].admin:
                        r.fail((*fp, "roles", role_id), "admin roles always have read_write")
                    elif acc not in access:
                        r.fail((*fp, "roles", role_id), "invalid access", acc, one_of(access))
                    else:
                        per_role[role_id] = cast(Access, acc)
                rules.append(FieldRule(product, module, name, cast(Access, default),
                                       dict(sorted(per_role.items())),
                                       r.boolean((*fp, "personal_data")), r.src.at(fp)))
    return rules
