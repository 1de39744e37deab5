"""What both servers serve: synthetic organizations compiled by our compiler, their
directories in a SQLite store (authz) and Cerbos policies generated from the same
compiled organizations, plus the two example organizations under authz/policies/orgs.
"""

from __future__ import annotations

import multiprocessing
import random
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authz import catalog, directory_file
from authz.decision import Channel, CheckRequest, Record
from authz.directory import DirectorySnapshot
from authz.engine.index import OrgIndex, load_org
from bench import orgs
from bench.peers import cerbos_policy
from bench.server import AUTHZ, _env

USERS = 100
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = ("acme-eu", "globex-us")


@dataclass
class World:
    """One set of organizations, ready for both servers."""

    count: int
    generated: Path
    db_url: str
    cerbos_policies: Path
    indexes: dict[str, OrgIndex] = field(default_factory=dict)
    snapshots: dict[str, DirectorySnapshot] = field(default_factory=dict)
    rules: int = 0

    @property
    def ids(self) -> list[str]:
        return [orgs.org_name(n) for n in range(self.count)]


def _compile(args: tuple[Path, int, int]) -> int:
    return orgs.write_orgs(*args)


def build(tmp: Path, count: int, examples: bool = False, cerbos: bool = True) -> World:
    """Compile `count` synthetic organizations, seed their directories, write Cerbos
    policies (unless not `cerbos`); with `examples`, the example organizations too
    (Cerbos and indexes only)."""
    folder = tmp / f"orgs-{count}"
    generated = folder / "generated"
    step = max(1, min(250, count // 2 or 1))
    # spawn, not fork: by now this process holds gRPC channels, and a forked child that
    # finalizes one waits forever on a thread it does not have.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_compile, [(generated, a, min(count, a + step))
                                 for a in range(0, count, step)]))
    url = f"sqlite:///{folder}/authz.db"
    subprocess.run([AUTHZ, "db", "upgrade", "--db", url], check=True, capture_output=True,
                   env=_env())
    from authz.store import open_store

    world = World(count, generated, url, folder / "cerbos")
    roles = orgs.role_ids(orgs.shared_tree(), orgs.Shape())
    store = open_store(url)
    try:
        for org_id in world.ids:
            lists = orgs.directory_lists(org_id, roles, USERS)
            store.import_directory(org_id, *lists)
            world.indexes[org_id] = load_org(generated, org_id)
            world.snapshots[org_id] = DirectorySnapshot.build(org_id, 1, *lists)
    finally:
        store.close()
    if examples:
        shipped = REPO / "authz" / "policies" / "generated"
        for org_id in EXAMPLES:
            world.indexes[org_id] = load_org(shipped, org_id)
            df = directory_file.read(REPO / "authz" / "policies" / "orgs" / org_id / "tests"
                                     / "directory.yaml")
            world.snapshots[org_id] = df.snapshot()
    if cerbos:
        world.rules = cerbos_policy.write_policies(list(world.indexes.values()),
                                                   world.cerbos_policies)
    return world


_STATUSES = ("", "draft", "pending_approval", "approved", "sent", "rejected", "paid")


def example_request(rng: random.Random, world: World, org_id: str) -> CheckRequest:
    """A random valid question about an example organization (any product, any action)."""
    idx, snap = world.indexes[org_id], world.snapshots[org_id]
    users = sorted(snap.crm_users)
    user = rng.choice(users)
    product = rng.choice(idx.products)
    module = rng.choice([m for m in catalog.MODULES[product]
                         if m not in ("reports", "dashboard", "settings")])
    action = rng.choice(catalog.actions_for(module))
    customers = sorted({c for u in snap.crm_users.values()
                        for f in snap.finance_users(u).values() for c in f.assigned_customers})
    rec = Record(record_id="r1", owner=rng.choice((user, rng.choice(users), "")),
                 customer_id=rng.choice(("", "c-unknown", *customers)),
                 total=rng.choice((None, 50.0, 5000.0, 20000.0)), status=rng.choice(_STATUSES),
                 approval_level=rng.choice((0, 1, 2)),
                 created_by=rng.choice((user, rng.choice(users))),
                 location=rng.choice(("", *orgs.LOCATIONS)))
    writes = (rng.choice(("discount", "notes", "tax_id", "memo")),) if rng.random() < 0.2 else ()
    return CheckRequest(org_id, user, action, module, product=rng.choice(("", product)),
                        record=rec, write_fields=writes,
                        channel=Channel.DIRECT if rng.random() < 0.1 else Channel.CRM)


def cerbos_question(world: World, req: CheckRequest) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(principal, resource, action) for Cerbos, for one of our Check requests."""
    idx, snap = world.indexes[req.org_id], world.snapshots[req.org_id]
    return (cerbos_policy.principal(idx, snap, req), cerbos_policy.resource(req),
            cerbos_policy.action(req))
