"""The decision hot path's shortcuts decide exactly as the plain path does.

Identity resolution is cached per directory snapshot, `Engine.check_cached` decides from
memory only (the server's inline path), decision ids are random. None of that may change
an answer, and a policy reload must never be answered from a stale cache entry.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

from authz import catalog
from authz.decision import CheckRequest, Decision, Record
from authz.directory import DirectorySnapshot
from authz.directory_file import read
from authz.engine import Engine, MemoryDirectory, PolicySet
from authz.engine.identity import resolve, resolve_cached
from authz.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2] / "authz" / "policies"
GENERATED = ROOT / "generated"
ORG = "acme-eu"


@pytest.fixture(scope="module")
def snap() -> DirectorySnapshot:
    return read(ROOT / "orgs" / ORG / "tests" / "directory.yaml").snapshot()


def _requests(snap: DirectorySnapshot) -> list[CheckRequest]:
    users = [*snap.crm_users, "nobody", next(iter(snap.crm_users.values())).email.upper()]
    out = []
    for user, module, action in itertools.product(users, ("invoices", "estimates"),
                                                  ("view", "create", "approve", "edit")):
        for status in ("", "pending_approval", "approved"):
            out.append(CheckRequest(ORG, user, action, module,
                                    record=Record(owner=user, total=5000.0, status=status)))
    return out


def _same(a: Decision, b: Decision) -> bool:
    return dataclasses.replace(a, decision_id="") == dataclasses.replace(b, decision_id="")


def test_cached_identity_is_the_resolved_one(snap: DirectorySnapshot) -> None:
    org = PolicySet(GENERATED).get(ORG)
    fresh = DirectorySnapshot.build(ORG, 1, snap.crm_users.values(),
                                    [f for fs in snap.finance_by_email.values() for f in fs.values()],
                                    snap.integration_users.values())
    for user in [*snap.crm_users, "nobody"]:
        first = resolve_cached(org, fresh, user)
        assert first == resolve(org, fresh, user)
        assert resolve_cached(org, fresh, user) is first  # the second time: from the cache


def test_a_reloaded_policy_is_never_answered_from_the_cache(snap: DirectorySnapshot) -> None:
    policies = PolicySet(GENERATED)
    old = policies.get(ORG)
    user = next(u for u in snap.crm_users if resolve(old, snap, u).identity.roles)
    resolve_cached(old, snap, user)
    new = policies.load(ORG)  # a reload builds a new index
    assert new is not old
    changed = dataclasses.replace(new, implied={r: (*new.roles_of((r,)), "books:extra")
                                                for r in old.roles_of(resolve(old, snap, user)
                                                                      .identity.roles)})
    assert resolve_cached(changed, snap, user) == resolve(changed, snap, user)
    assert "books:extra" in resolve_cached(changed, snap, user).identity.roles


def test_the_cache_is_bounded(snap: DirectorySnapshot) -> None:
    org = PolicySet(GENERATED).get(ORG)
    for n in range(5000):
        resolve_cached(org, snap, f"stranger-{n}")
    assert len(snap.resolved) <= len(snap.crm_users) + 1024


def test_check_cached_decides_as_check(snap: DirectorySnapshot) -> None:
    engine = Engine(PolicySet(GENERATED), MemoryDirectory([snap]))
    engine.policies.get(ORG)
    for req in _requests(snap):
        cached = engine.check_cached(req)
        assert cached is not None and _same(cached, engine.check(req)), req


def test_check_cached_defers_what_needs_io(snap: DirectorySnapshot) -> None:
    req = CheckRequest(ORG, next(iter(snap.crm_users)), "view", "invoices")
    cold = Engine(PolicySet(GENERATED), MemoryDirectory([snap]))
    assert cold.check_cached(req) is None  # policy not loaded: a disk read
    cold.policies.get(ORG)
    assert cold.check_cached(req) is not None
    no_snapshot = Engine(cold.policies, MemoryDirectory())
    assert no_snapshot.check_cached(req) is None  # directory not in memory: a store read
    with pytest.raises(InvalidArgument):  # a malformed request is refused, not deferred
        cold.check_cached(dataclasses.replace(req, module="nope"))


def test_decision_ids_are_random_hex(snap: DirectorySnapshot) -> None:
    engine = Engine(PolicySet(GENERATED), MemoryDirectory([snap]))
    req = CheckRequest(ORG, next(iter(snap.crm_users)), "view", catalog.BOOKS_MODULES[0])
    ids = {engine.check(req).decision_id for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
