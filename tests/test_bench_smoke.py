"""`make bench` set-up, in miniature: a change to the policy model or the store that the
benchmark's generators were not told about fails here, in `make test`, not at the first
step of a ten-minute bench run (bench/orgs.py once passed a removed `unified_since`).

Two synthetic organizations go through the code paths the bench runs first: generated
and compiled by bench/orgs.py (in spawned workers, as bench/peers/setup.py does), their
directories seeded into a migrated SQLite store, indexed, their Cerbos policies written,
and random questions asked of decide() and turned into both servers' wire messages.
Nothing is timed.
"""

from __future__ import annotations

import json
import pickle
import random
import zlib

import pytest

from authz.decision import CheckRequest
from authz.engine.decide import decide
from authz.errors import InvalidArgument
from authz.store import open_store
from bench import orgcache, orgs
from bench import server as bench_server
from bench.peers import cerbos_policy, setup


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> setup.World:
    return setup.build(tmp_path_factory.mktemp("bench"), 2, examples=True, cerbos=True)


def _answer(req: CheckRequest, world: setup.World) -> bool:
    try:
        return decide(req, world.indexes[req.org_id], world.snapshots[req.org_id]).allowed
    except InvalidArgument:
        return False


def test_synthetic_organizations_compile_and_load(world: setup.World) -> None:
    assert world.ids == ["org-00000", "org-00001"]
    assert set(world.indexes) == {*world.ids, *setup.EXAMPLES}
    for org_id in world.ids:
        assert (world.generated / "orgs" / f"{org_id}.json").is_file()
        idx = world.indexes[org_id]
        assert idx.products == (orgs.BOOKS,)
        assert idx.effective_mode == "unified"
        assert {"invoices", "estimates", "purchase_orders"} <= {
            m for _, m in idx.approvals}
    roles = orgs.role_ids(orgs.shared_tree(), orgs.Shape())
    store = open_store(world.db_url)
    try:
        stored = {org_id: store.snapshot(org_id) for org_id in world.ids}
    finally:
        store.close()
    for org_id, snap in stored.items():  # the store reads back what the generator made
        made = orgs.directory(org_id, roles, setup.USERS)
        assert snap.crm_users == made.crm_users and snap.crm_users
        assert snap.finance_by_email == made.finance_by_email
        assert snap.integration_users == made.integration_users


def test_cerbos_policies_written_for_every_organization(world: setup.World) -> None:
    assert world.rules > 0
    for org_id in world.indexes:
        doc = json.loads((world.cerbos_policies / f"{cerbos_policy.version(org_id)}.yaml")
                         .read_text(encoding="utf-8"))
        assert doc["resourcePolicy"]["version"] == cerbos_policy.version(org_id)
        assert doc["resourcePolicy"]["rules"]


def test_random_questions_are_answered_and_encoded(world: setup.World) -> None:
    rng = random.Random(3)
    reqs = [orgs.request(rng, rng.choice(world.ids), setup.USERS) for _ in range(200)]
    reqs += [setup.example_request(rng, world, rng.choice(setup.EXAMPLES)) for _ in range(100)]
    answers = [_answer(r, world) for r in reqs]
    # A generator that only ever produces refusals or denials measures nothing.
    assert any(answers) and not all(answers)
    for r in reqs:
        assert bench_server.to_pb(r).SerializeToString()
        principal, resource, action = setup.cerbos_question(world, r)
        assert principal["id"] and resource["policy_version"] and ":" in action


def test_index_cache_worker_builds_what_the_loader_loads(world: setup.World) -> None:
    """bench/core.py's organizations come from orgcache's workers (pickled indexes)."""
    (built,) = pickle.loads(zlib.decompress(orgcache._build((1, 2, "org"))))
    assert built.org_id == "org-00001"
    assert built.role_rules == world.indexes["org-00001"].role_rules
