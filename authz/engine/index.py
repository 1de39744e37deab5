"""The decision index: an organization's compiled policy, looked up by key.

Casbin's `enforce` scans every policy line for every question (about 3.5 µs a line).
The index is built once from the policy Casbin loaded (and its role graph) and answers
the same questions with a few dict lookups, whatever the organization's size.
`authz.engine.reference` answers them with `enforce`; differential tests compare both.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import casbin
from casbin.model import Model
from casbin.persist import load_policy_line
from casbin.persist.adapters import FileAdapter

from authz import catalog
from authz.policy import integrity
from authz.policy.compiler import MAP_SUFFIX, MODEL_CONF, user_subject

_ACCESS_RANK = {a: i for i, a in enumerate(catalog.FIELD_ACCESS)}

#: One bit per (product, module, action) the catalogue has, in a fixed order (the same in
#: every process, so a pickled index means the same thing wherever it is loaded): a role's
#: grants are a few integers instead of a dict per action (~120 KB an organization).
_KEYS: tuple[tuple[str, str, str], ...] = tuple(
    (sys.intern(p), sys.intern(m), sys.intern(a))
    for p in catalog.PRODUCTS for m in catalog.MODULES[p] for a in catalog.actions_for(m))
_BIT: dict[tuple[str, str, str], int] = {k: 1 << i for i, k in enumerate(_KEYS)}
#: What a module without field rules hides and makes read-only, for every role.
_NO_MASKS: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
#: Immutable parts of indexes by value (`_shared`): equal ones are held once. Bounded:
#: when full it is emptied, which costs sharing, not correctness.
_SHARED: dict[Any, Any] = {}
_SHARED_DICTS: dict[frozenset[Any], dict[Any, Any]] = {}
_SHARED_MAX = 100_000
_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")

# A role's rules: (mask of (product, module, action) bits, scope, channel), one entry per
# distinct (scope, channel); each bit is in at most one mask (one rule per role and key).
RoleRules = tuple[tuple[int, str, str], ...]


class Grant(NamedTuple):
    """One `p` line: a role grants an action on a module of a product.

    Made on demand by `OrgIndex.grant` (the index keeps only scope and channel per
    line), so an organization costs about 50 bytes a policy line instead of 500.
    """

    role: str
    product: str
    module: str
    action: str
    scope: str
    channel: str

    @property
    def line(self) -> str:
        """The policy line, as Casbin reads it (for `explain`)."""
        return ", ".join(("p", *self))


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """An approval rule as the manifest describes it (criteria are re-parsed here)."""

    id: str
    lo: float
    lo_closed: bool
    hi: float
    hi_closed: bool
    has_criteria: bool
    outcome: str
    levels: int

    def matches(self, total: float | None) -> bool:
        if not self.has_criteria:
            return True
        if total is None:
            return False
        if total < self.lo or (total == self.lo and not self.lo_closed):
            return False
        return not (total > self.hi or (total == self.hi and not self.hi_closed))


@dataclass(frozen=True, slots=True)
class ModuleApprovalInfo:
    type: str
    blocked: frozenset[str]
    flows: tuple[FlowInfo, ...]

    def flow_for(self, total: float | None) -> FlowInfo | None:
        """The first rule (by priority) whose criteria the record meets."""
        for flow in self.flows:
            if flow.matches(total):
                return flow
        return None


@dataclass(slots=True, kw_only=True)
class OrgIndex:
    """Everything a decision needs about one organization's policy, keyed for lookups.

    What every decision reads comes first: slots are laid out in this order, so those
    reads touch two or three cache lines of the object, not all of them."""

    effective_mode: str
    products: tuple[str, ...]
    # role -> its rules over the catalogue's (product, module, action) bits
    role_rules: dict[str, RoleRules]
    approvals: dict[tuple[str, str], ModuleApprovalInfo]
    # (product, module) -> field -> role -> access
    fields: dict[tuple[str, str], dict[str, dict[str, str]]]
    _masks: dict[tuple[tuple[str, ...], str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )
    org_id: str
    revision: str
    allow_self_approval: bool
    # role -> the roles it holds through Casbin's role graph (itself first); roles that
    # hold only themselves are left out
    implied: dict[str, tuple[str, ...]]
    # where compiled rows came from (compiler.source_map), for explain; empty when absent
    sources: dict[str, Any] = field(default_factory=dict)
    # roles -> how decisions name them ("role Staff (books)"), filled on first use
    labels: dict[tuple[str, ...], str] = field(default_factory=dict)
    mode_reason: str
    integration_owner: str
    role_names: dict[str, str]
    # (product, module, action) outside the catalogue -> role -> (scope, channel): kept
    # apart so that the bits stay fixed; a compiled policy names none (it is validated)
    other_grants: dict[tuple[str, str, str], dict[str, tuple[str, str]]]
    # (product, module, flow, level) -> approver subjects (role keys and user:<email>)
    approvers: dict[tuple[str, str, str, int], frozenset[str]]
    blocked: frozenset[tuple[str, str, str]]
    # the manifest's JSON, compressed: read by admin paths only, so not kept parsed
    manifest_z: bytes

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """Unpickled (an index built in another process): role tables and names shared
        again, as `build_index` shares them."""
        for name, value in state[1].items():
            object.__setattr__(self, name, value)
        intern = sys.intern
        self.role_rules = {intern(r): _shared(tuple((m, intern(s), intern(c)) for m, s, c in t))
                           for r, t in self.role_rules.items()}
        self.products = _shared(tuple(map(intern, self.products)))
        self.effective_mode = intern(self.effective_mode)
        self.approvals = _shared_dict({
            _shared((intern(p), intern(m))): _shared(ModuleApprovalInfo(
                intern(a.type), frozenset(map(intern, a.blocked)), a.flows))
            for (p, m), a in self.approvals.items()})

    @property
    def manifest(self) -> dict[str, Any]:
        """The compiled manifest (a fresh copy each call)."""
        return json.loads(zlib.decompress(self.manifest_z))  # type: ignore[no-any-return]

    def roles_of(self, roles: tuple[str, ...]) -> tuple[str, ...]:
        """Expand a user's direct roles through the role graph."""
        if len(roles) == 1:
            return self.implied.get(roles[0], roles)
        out: list[str] = []
        for r in roles:
            for x in self.implied.get(r, (r,)):
                if x not in out:
                    out.append(x)
        return tuple(out)

    def grant(self, roles: tuple[str, ...], product: str, module: str, action: str,
              assigned: bool, channel: str) -> Grant | None:
        """The first grant among the roles that allows the action here, or None."""
        bit = _BIT.get((product, module, action))
        if bit is None:
            return self._other_grant(roles, product, module, action, assigned, channel)
        role_rules = self.role_rules
        for role in roles:
            rules = role_rules.get(role)
            if rules is not None:
                for mask, scope, chan in rules:
                    if mask & bit:
                        if (scope == "all" or assigned) and (chan == "*" or chan == channel):
                            return Grant(role, product, module, action, scope, chan)
                        break
        return None

    def _other_grant(self, roles: tuple[str, ...], product: str, module: str, action: str,
                     assigned: bool, channel: str) -> Grant | None:
        by_role = self.other_grants.get((product, module, action))
        if by_role is None:
            return None
        for role in roles:
            rule = by_role.get(role)
            if rule is not None:
                scope, chan = rule
                if (scope == "all" or assigned) and (chan == "*" or chan == channel):
                    return Grant(role, product, module, action, scope, chan)
        return None

    def rule(self, role: str, product: str, module: str, action: str
             ) -> tuple[str, str] | None:
        """(scope, channel) of the role's line for this action, whatever the request."""
        bit = _BIT.get((product, module, action))
        if bit is None:
            return self.other_grants.get((product, module, action), {}).get(role)
        for mask, scope, chan in self.role_rules.get(role, ()):
            if mask & bit:
                return scope, chan
        return None

    def grant_lines(self) -> Iterator[Grant]:
        """Every grant the index holds, one per (role, product, module, action)."""
        for role, rules in self.role_rules.items():
            for mask, scope, chan in rules:
                for i, key in enumerate(_KEYS):
                    if mask >> i & 1:
                        yield Grant(role, *key, scope, chan)
        for key, by_role in self.other_grants.items():
            for role, (scope, chan) in by_role.items():
                yield Grant(role, *key, scope, chan)

    def masks(self, roles: tuple[str, ...], product: str, module: str
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(hidden, read_only) fields of a module for a set of roles; the strongest wins."""
        by_field = self.fields.get((product, module))
        if by_field is None:
            return _NO_MASKS  # no field rules here: nothing to cache per role set
        key = (roles, product, module)
        cached = self._masks.get(key)
        if cached is not None:
            return cached
        hidden: list[str] = []
        read_only: list[str] = []
        for name, per_role in by_field.items():
            best = -1
            for role in roles:
                acc = per_role.get(role)
                if acc is not None and _ACCESS_RANK[acc] > best:
                    best = _ACCESS_RANK[acc]
            if best == -1:
                continue  # no rule for these roles: the field is unrestricted
            if best == 0:
                hidden.append(name)
            elif best == 1:
                read_only.append(name)
        result = (tuple(sorted(hidden)), tuple(sorted(read_only)))
        self._masks[key] = result
        return result

    def is_approver(self, roles: tuple[str, ...], email: str, product: str, module: str,
                    flow: str, level: int) -> bool:
        subjects = self.approvers.get((product, module, flow, level))
        if not subjects:
            return False
        if email and user_subject(email) in subjects:
            return True
        return any(r in subjects for r in roles)

    def is_named_approver(self, email: str, product: str, module: str, flow: str,
                          level: int) -> bool:
        """Whether the e-mail is named (as a user, not through a role) at this level."""
        subjects = self.approvers.get((product, module, flow, level))
        return subjects is not None and bool(email) and user_subject(email) in subjects

    def level_approvers(self, product: str, module: str, flow: str, level: int
                        ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(roles, user e-mails) who approve at a level."""
        subjects = self.approvers.get((product, module, flow, level), frozenset())
        roles = tuple(sorted(s for s in subjects if not s.startswith("user:")))
        users = tuple(sorted(s[5:] for s in subjects if s.startswith("user:")))
        return roles, users


# What Casbin's tokenizer treats specially (nesting), what the csv module would read
# differently (quotes), and whitespace that Casbin strips around a token but csv keeps
# (non-ASCII text is left to Casbin too).
_NOT_PLAIN = ("[", "]", "(", ")", '"', " ,", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d",
              "\x1e", "\x1f")


def _plain(text: str) -> bool:
    return text.isascii() and not any(s in text for s in _NOT_PLAIN)


class _PolicyFileAdapter(FileAdapter):  # type: ignore[misc]
    """Casbin's FileAdapter, minus its per-line regex tokenizer (80% of a load).

    For plain text (what the compiler writes) Casbin's tokens are exactly the comma-
    separated parts with the spaces after each comma dropped, which the C csv reader
    produces; anything else goes through Casbin's own loader.
    """

    def __init__(self, file_path: str, text: str | None = None) -> None:
        super().__init__(file_path)
        self._text = text  # verified bytes already read (load_org): never read twice

    def _load_policy_file(self, model: Model) -> None:
        text = self._text
        if text is None:
            with open(self._file_path, "rb") as file:
                text = file.read().decode()
        if not _plain(text):
            for line in text.split("\n"):  # as Casbin's readline loop splits
                load_policy_line(line.strip(), model)
            return
        sections = model.model
        lines = [ln for ln in map(str.strip, text.split("\n")) if ln and ln[0] != "#"]
        for tokens in csv.reader(lines, skipinitialspace=True):
            key = tokens[0]
            assertions = sections.get(key[0])
            if assertions is not None and key in assertions:
                assertions[key].policy.append(tokens[1:])


class _Model(Model):  # type: ignore[misc]
    """Casbin's model, minus formatting the whole policy for a log line nobody reads."""

    def print_policy(self) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().print_policy()


def load_enforcer(csv_path: Path, text: str | None = None) -> casbin.Enforcer:
    """A Casbin enforcer for one organization's compiled policy (`text`: its verified
    content, else the file is read)."""
    model = _Model()
    model.load_model_from_text(MODEL_CONF)
    enforcer = casbin.Enforcer(model, _PolicyFileAdapter(str(csv_path), text))
    # Role links are plain names: skip pattern matching, which is quadratic in users.
    enforcer.get_role_manager().add_matching_func(None)
    return enforcer


def _flow(rule: dict[str, Any]) -> FlowInfo:
    from authz.policy.criteria import parse

    if rule["when"]:
        iv = parse(rule["when"]).interval
        return FlowInfo(rule["id"], iv.lo, iv.lo_closed, iv.hi, iv.hi_closed, True,
                        rule["outcome"], rule["levels"])
    return FlowInfo(rule["id"], 0.0, True, 0.0, True, False, rule["outcome"], rule["levels"])


def build_index(enforcer: casbin.Enforcer, manifest: dict[str, Any]) -> OrgIndex:
    """Index the policy an enforcer has loaded, with the organization's manifest."""
    # Names are interned: organizations share one copy of "books", "books:staff", ...
    intern = sys.intern
    # role -> key -> (scope, channel): the first line per (role, key), or its first with
    # scope "all" (what Casbin's allow-if-any-line-matches makes of several)
    per_role: dict[str, dict[tuple[str, str, str], tuple[str, str]]] = {}
    for sub, prod, mod, act, scope, chan in enforcer.get_named_policy("p"):
        mine = per_role.setdefault(sub, {})
        key = (prod, mod, act)
        if key not in mine or (scope == "all" and mine[key][0] != "all"):
            mine[key] = (scope, chan)
    role_rules: dict[str, RoleRules] = {}
    other: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {}
    for sub, mine in per_role.items():
        masks: dict[tuple[str, str], int] = {}
        for key, (scope, chan) in mine.items():
            bit = _BIT.get(key)
            if bit is None:
                k = (intern(key[0]), intern(key[1]), intern(key[2]))
                other.setdefault(k, {})[intern(sub)] = (intern(scope), intern(chan))
            else:
                masks[(scope, chan)] = masks.get((scope, chan), 0) | bit
        if masks:
            table = tuple(sorted((m, intern(sc), intern(ch)) for (sc, ch), m in masks.items()))
            role_rules[intern(sub)] = _shared(table)
    fields: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for sub, prod, mod, fld, access in enforcer.get_named_policy("p2"):
        by_role = fields.setdefault((intern(prod), intern(mod)), {}).setdefault(intern(fld), {})
        if sub not in by_role or _ACCESS_RANK[access] > _ACCESS_RANK[by_role[sub]]:
            by_role[intern(sub)] = intern(access)
    approvers: dict[tuple[str, str, str, int], set[str]] = {}
    for sub, prod, mod, flow, level in enforcer.get_named_policy("p3"):
        approvers.setdefault((intern(prod), intern(mod), intern(flow), int(level)),
                             set()).add(intern(sub))
    blocked = frozenset((prod, mod, act) for prod, mod, act in enforcer.get_named_policy("p4"))
    roles = set(per_role) | {s for f in fields.values() for r in f.values() for s in r}
    rm = enforcer.get_role_manager()
    implied = {}
    if enforcer.get_named_grouping_policy("g"):
        for role in roles:
            above = sorted(set(rm.get_roles(role)) - {role})
            if above:
                implied[intern(role)] = (intern(role), *map(intern, above))
    approvals = {}
    for key, cfg in manifest["approvals"].items():
        prod, mod = key.split("/", 1)
        approvals[_shared((intern(prod), intern(mod)))] = _shared(ModuleApprovalInfo(
            intern(cfg["type"]), frozenset(map(intern, cfg["blocked_until_approved"])),
            tuple(_flow(r) for r in cfg["rules"])))
    return OrgIndex(
        org_id=manifest["org_id"],
        revision=manifest["revision"],
        manifest_z=zlib.compress(json.dumps(manifest).encode(), 1),
        products=_shared(tuple(map(intern, manifest["products"]))),
        effective_mode=intern(manifest["effective_mode"]),
        mode_reason=intern(manifest["mode_reason"]),
        integration_owner=manifest["integration_owner"],
        allow_self_approval=manifest["allow_self_approval"],
        role_names={intern(k): v["name"] for k, v in manifest["roles"].items()},
        role_rules=role_rules,
        other_grants=other,
        implied=implied,
        fields=fields,
        approvers={k: frozenset(v) for k, v in approvers.items()},
        approvals=_shared_dict(approvals),
        blocked=blocked,
    )


def load_org(generated: Path, org_id: str) -> OrgIndex:
    """Load one organization's compiled files, verified against their seal before any row
    is used (raises `PolicyIntegrityError` naming the file), and index them."""
    csv_path = generated / "orgs" / f"{org_id}.csv"
    files = integrity.verify(generated / "orgs", org_id, MODEL_CONF)
    enforcer = load_enforcer(csv_path, files.csv_text)
    loaded = {k: len(enforcer.get_named_policy(k)) for k in integrity.ROW_KINDS if k != "g"}
    loaded["g"] = len(enforcer.get_named_grouping_policy("g"))
    integrity.check_loaded(org_id, str(csv_path), files.rows, loaded)
    idx = build_index(enforcer, files.manifest)
    integrity.check_tables(org_id, str(csv_path), files.manifest, idx.fields,
                           idx.approvers, idx.blocked)
    mapped = files.extra.get(f"{org_id}{MAP_SUFFIX}")
    if mapped:
        idx.sources = _interned(json.loads(mapped))
    return idx


def _shared(value: _T) -> _T:
    """The one copy of an equal value (role tables, approval settings, product lists:
    organizations made from the same templates share them, and shared objects stay in
    the CPU's caches however many organizations are loaded)."""
    known = _SHARED.get(value)
    if known is not None:
        return known  # type: ignore[no-any-return]
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[value] = value
    return value


def _shared_dict(value: dict[_K, _V]) -> dict[_K, _V]:
    """`_shared` for a dict that is never written after it is built."""
    key = frozenset(value.items())
    known = _SHARED_DICTS.get(key)
    if known is not None and known == value:
        return known
    if len(_SHARED_DICTS) >= _SHARED_MAX:
        _SHARED_DICTS.clear()
    _SHARED_DICTS[key] = value
    return value


def _interned(value: Any) -> Any:
    """A parsed source map with its texts interned: role keys, shared file names and
    lines repeat across organizations."""
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, str):
        return sys.intern(value)
    return value
