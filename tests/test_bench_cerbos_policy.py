"""The Cerbos policies the bench compares us with (bench/peers/cerbos_policy.py) must say
what authz decides, or the bench's agreement figure compares two different policies.

Cheap and without Cerbos: for every example organization, each module's "not past
approval" variable in the generated policy is read back (its list of states) and checked,
status by status, against what decide() does with an action blocked until approval. A
change to decide's state sets (commit 038a1ee: "accepted" on an invoice is not past
approval) that the generator misses fails here. When a Cerbos binary is already installed
under bench/.peers (`make bench-peers`), a small random sample is also asked of both.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest

from authz import catalog, directory_file
from authz.decision import Channel, CheckRequest, Reason, Record
from authz.directory import CrmUser, DirectorySnapshot, FinanceUser
from authz.engine.decide import decide
from authz.engine.index import OrgIndex, load_org
from authz.errors import InvalidArgument
from bench import orgs
from bench.peers import cerbos, cerbos_policy
from bench.peers.setup import USERS, World, cerbos_question, example_request

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "authz" / "policies" / "generated"
EXAMPLES = sorted(p.stem for p in (GENERATED / "orgs").glob("*.json"))
#: Organizations in unified mode (a legacy one's policy is a single allow: the CRM acts).
UNIFIED = [o for o in EXAMPLES if load_org(GENERATED, o).effective_mode == "unified"]
STATUSES = sorted({"", *catalog.RECORD_STATES})
ADMIN = "u-admin"
_IN_LIST = re.compile(r"!\(R\.attr\.status in (\[.*\])\)")


def _admin(idx: OrgIndex) -> DirectorySnapshot:
    """One active user, Admin in every product of the organization."""
    crm = CrmUser(ADMIN, "admin@example.test", "Admin")
    fin = [FinanceUser(p, f"{p}-admin", crm.email, "Admin", "admin") for p in idx.products]
    return DirectorySnapshot.build(idx.org_id, 1, [crm], fin)


def _blocked_by_authz(idx: OrgIndex, snap: DirectorySnapshot, product: str, module: str,
                      action: str, status: str) -> bool:
    rec = Record(record_id="r1", owner=ADMIN, total=50.0, status=status, approval_level=1,
                 created_by=ADMIN)
    req = CheckRequest(idx.org_id, ADMIN, action, module, product=product, record=rec,
                       channel=Channel.CRM)
    return decide(req, idx, snap).reason == Reason.BLOCKED_UNTIL_APPROVED


def _policy(idx: OrgIndex) -> dict[str, Any]:
    return cerbos_policy.resource_policy(idx)["resourcePolicy"]  # type: ignore[no-any-return]


def test_examples_include_unified_organizations() -> None:
    assert len(UNIFIED) >= 2 and len(UNIFIED) < len(EXAMPLES), (UNIFIED, EXAMPLES)


@pytest.mark.parametrize("org_id", UNIFIED)
def test_not_past_approval_is_the_states_decide_blocks(org_id: str) -> None:
    idx = load_org(GENERATED, org_id)
    snap = _admin(idx)
    policy = _policy(idx)
    variables: dict[str, str] = policy["variables"]["local"]
    checked = 0
    for (product, module), approval in sorted(idx.approvals.items()):
        if approval.type == "none" or product not in idx.products or not approval.blocked:
            continue
        blocked = sorted(f"{module}:{a}" for a in approval.blocked)
        guard = f'R.attr.product == "{product}")'  # several products: one product's rule
        (rule,) = [r for r in policy["rules"]
                   if r["actions"] == blocked and r["effect"] == "EFFECT_DENY"
                   and (len(idx.products) == 1 or guard in r["condition"]["match"]["expr"])]
        (name,) = re.findall(r"V\.(\w+)", rule["condition"]["match"]["expr"])
        found = _IN_LIST.fullmatch(variables[name])
        assert found, f"{name} = {variables[name]}: not the form this test reads"
        past = set(json.loads(found.group(1)))
        for status in STATUSES:
            for action in approval.blocked:
                by_authz = _blocked_by_authz(idx, snap, product, module, action, status)
                assert by_authz == (status not in past), (
                    f"{org_id} {product} {module}:{action} status {status!r}: authz "
                    f"{'blocks' if by_authz else 'allows'}, the Cerbos policy "
                    f"{'allows' if status in past else 'blocks'}")
                checked += 1
    assert checked, f"{org_id}: no module with actions blocked until approval"


@pytest.mark.parametrize("org_id", UNIFIED)
def test_every_variable_a_rule_reads_is_defined(org_id: str) -> None:
    policy = _policy(load_org(GENERATED, org_id))
    defined = set(policy["variables"]["local"])
    text = json.dumps(policy["rules"])
    used = set(re.findall(r"V\.(\w+)", text))
    assert used <= defined, used - defined
    # Status sets live in the variables only, where the test above reads them.
    assert "R.attr.status in" not in text


def _cerbos_binary() -> Path:
    return cerbos.PEERS / "node_modules" / "@cerbos" / "cerbos-linux-x64" / "cerbos-linux-x64"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_sample_agrees_with_cerbos_when_installed(tmp_path: Path) -> None:
    """The example organizations in unified mode (two of several products) and one
    synthetic organization, with any state a module knows."""
    if not _cerbos_binary().exists():
        pytest.skip("Cerbos not installed under bench/.peers (`make bench-peers` installs it): "
                    "agreement sample not run; the state-set checks above still ran")
    world = World(0, GENERATED, "", tmp_path / "cerbos")
    for org_id in UNIFIED:
        world.indexes[org_id] = load_org(GENERATED, org_id)
        world.snapshots[org_id] = directory_file.read(
            REPO / "authz" / "policies" / "orgs" / org_id / "tests" / "directory.yaml").snapshot()
    synthetic = orgs.org_name(0)
    orgs.write_orgs(tmp_path / "generated", 0, 1)
    world.indexes[synthetic] = load_org(tmp_path / "generated", synthetic)
    world.snapshots[synthetic] = orgs.directory(
        synthetic, orgs.role_ids(orgs.shared_tree(), orgs.Shape()), USERS)
    cerbos_policy.write_policies(list(world.indexes.values()), world.cerbos_policies)
    rng = random.Random(13)
    asked = [example_request(rng, world, rng.choice(UNIFIED)) for _ in range(2400)]
    asked += [orgs.request(rng, synthetic, USERS) for _ in range(300)]
    # Any state a module knows, not only the bench's few: a state of another module (on
    # an action blocked until approval) is where the two policies drifted apart.
    questions = [dataclasses.replace(q, record=dataclasses.replace(
        q.record, status=rng.choice(STATUSES))) for q in asked]
    pb = cerbos.stubs()
    disagreements = []
    with cerbos.server(world.cerbos_policies, tmp_path, _port(), _port(), {}) as address, \
            grpc.insecure_channel(address) as channel:
        ask = channel.unary_unary(cerbos.METHOD,
                                  request_serializer=pb.CheckResourcesRequest.SerializeToString,
                                  response_deserializer=pb.CheckResourcesResponse.FromString)
        for req in questions:
            try:
                ours = decide(req, world.indexes[req.org_id], world.snapshots[req.org_id]).allowed
            except InvalidArgument:
                ours = False
            principal, res, action = cerbos_question(world, req)
            answer = ask(cerbos.request(pb, principal, [(res, action)]), timeout=30)
            theirs = answer.results[0].actions[action] == pb.EFFECT_ALLOW
            if theirs != ours:
                disagreements.append(f"{req}: authz {ours}, cerbos {theirs}")
    assert not disagreements, "\n".join(disagreements[:5])
