"""`python -m bench --parts peers` (`make bench-peers`): authz beside Cerbos and the echo
floor, measured in one run, interleaved; the side-by-side table with each target marked.

1. Cerbos PDP from npm (bench/peers/cerbos.py), policies generated from the same
   compiled organizations (bench/peers/cerbos_policy.py);
2. agreement on a random sample: authz's Check over gRPC vs Cerbos's CheckResources
   (synthetic organizations), and decide() vs Cerbos on the two example organizations;
3. one call at a time (p50, p99), 32 in flight (calls/s, server CPU per call), through a
   coalescing client when one is installed, 1,000 decisions (CheckBatch with audit on vs
   2 x CheckResources(500) sent together), idle CPU, and CPU per call at 1 and 1,000
   organizations. Server CPU is always the server's whole process tree (bench/server.py
   cpu_seconds): authz's audit shipper is a child process and its work is counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import socket
import tempfile
from pathlib import Path
from typing import Any

import grpc

from authz.engine.decide import decide
from authz.errors import InvalidArgument
from authz.v1 import authz_pb2 as pb
from bench import orgs
from bench import server as srv
from bench.peers import cerbos, cerbos_policy, coalesce, measure, table
from bench.peers.setup import EXAMPLES, USERS, World, build, cerbos_question, example_request
from bench.report import plot_peers
from bench.servers import ECHO_METHOD

MAIN_ORGS = 20
CHECK = "/authz.v1.AuthzService/Check"
BATCH = "/authz.v1.AuthzService/CheckBatch"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _questions(world: World, n: int, seed: int, with_cerbos: bool = True
               ) -> tuple[list[Any], list[bytes], list[bytes]]:
    """n random Check requests over the world's organizations: domain requests, our wire
    bytes, Cerbos's wire bytes (one resource each)."""
    cpb = cerbos.stubs()
    rng = random.Random(seed)
    reqs = [orgs.request(rng, rng.choice(world.ids), USERS) for _ in range(n)]
    ours = [srv.to_pb(r).SerializeToString() for r in reqs]
    theirs: list[bytes] = []
    for r in reqs if with_cerbos else ():
        principal, res, action = cerbos_question(world, r)
        theirs.append(cerbos.request(cpb, principal, [(res, action)]).SerializeToString())
    return reqs, ours, theirs


def agreement(world: World, authz_addr: str, cerbos_addr: str, n: int) -> dict[str, Any]:
    """Both servers asked the same random questions; counts and the first disagreements."""
    cpb = cerbos.stubs()
    reqs, ours, theirs = _questions(world, n, 7)
    rng = random.Random(11)
    examples = [example_request(rng, world, rng.choice(EXAMPLES)) for _ in range(n // 2)]
    asked = agreed = 0
    diffs: list[str] = []
    with grpc.insecure_channel(authz_addr) as a, grpc.insecure_channel(cerbos_addr) as c:
        check = a.unary_unary(CHECK, response_deserializer=pb.CheckResponse.FromString)
        ask = c.unary_unary(cerbos.METHOD,
                            response_deserializer=cpb.CheckResourcesResponse.FromString)
        answers = [(r, _allowed(lambda o=o: check(o, timeout=10).decision == pb.DECISION_ALLOW),
                    t) for r, o, t in zip(reqs, ours, theirs, strict=True)]
        for r in examples:
            allowed = _allowed(lambda r=r: decide(r, world.indexes[r.org_id],
                                                  world.snapshots[r.org_id]).allowed)
            principal, res, action = cerbos_question(world, r)
            answers.append((r, allowed,
                            cerbos.request(cpb, principal, [(res, action)]).SerializeToString()))
        for r, allowed, payload in answers:
            effect = ask(payload, timeout=10).results[0].actions[cerbos_policy.action(r)]
            asked += 1
            if (effect == cpb.EFFECT_ALLOW) == allowed:
                agreed += 1
            elif len(diffs) < 5:
                diffs.append(f"{r} authz allowed={allowed} cerbos effect={effect}")
    return {"asked": asked, "agreed": agreed, "examples_asked": len(examples),
            "disagreements": diffs, "modelled_differences": list(cerbos_policy.DIFFERENCES)}


def _allowed(ask: Any) -> bool:
    """authz's answer as allowed or not: a refused question (INVALID_ARGUMENT, e.g. an
    approval rule reads a total the request lacks) is not allowed."""
    try:
        return bool(ask())
    except InvalidArgument:
        return False
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
            raise
        return False


def _batch_jobs(world: World, authz_addr: str, cerbos_addr: str) -> dict[str, Any]:
    """1,000 decisions: two users' 500 questions each, as one CheckBatch (authz) and as
    2 x CheckResources(500) sent together (Cerbos: one principal per request). authz's
    CPU is counted until its audit shipper has put the batch's entries in the store."""
    cpb = cerbos.stubs()
    rng = random.Random(5)
    org = world.ids[0]
    batch = pb.CheckBatchRequest()
    per_user = []
    for user in ("u002", "u003"):
        reqs = []
        for _ in range(500):
            r = orgs.request(rng, org, USERS)
            r = dataclasses.replace(r, user=user)
            reqs.append(r)
            batch.requests.append(srv.to_pb(r))
        principal = cerbos_question(world, reqs[0])[0]
        per_user.append(cerbos.request(cpb, principal, [(cerbos_policy.resource(r),
                                                         cerbos_policy.action(r)) for r in reqs]))
    a_ch, c_ch = grpc.insecure_channel(authz_addr), grpc.insecure_channel(cerbos_addr)
    check_batch = a_ch.unary_unary(BATCH)
    resources = c_ch.unary_unary(cerbos.METHOD)
    payload = batch.SerializeToString()
    halves = [m.SerializeToString() for m in per_user]

    def ours() -> None:
        check_batch(payload, timeout=30)

    def theirs() -> None:
        futures = [resources.future(h, timeout=30) for h in halves]
        for f in futures:
            f.result()

    return {"authz": (srv.PIDS[authz_addr], ours, measure.audit_shipped(world.db_url)),
            "cerbos": (srv.PIDS[cerbos_addr], theirs, None),
            "_channels": (a_ch, c_ch)}


def _main_world(tmp: Path, quick: bool, out: dict[str, Any]) -> None:
    n, seconds, rounds, runs = (800, 1.5, 1, 5) if quick else (3000, 3.0, 2, 11)
    world = build(tmp, MAIN_ORGS, examples=True)
    print(f"  {MAIN_ORGS} synthetic organizations + {len(EXAMPLES)} examples; "
          f"{world.rules:,} Cerbos rules", flush=True)
    _, ours, theirs = _questions(world, 2000, 20251124)
    with srv.echo_server("aio", tmp) as echo, \
            srv.authz_server(world.db_url, world.generated, tmp, "authz") as authz, \
            cerbos.server(world.cerbos_policies, tmp, _port(), _port(), srv.PIDS) as cerb:
        with grpc.insecure_channel(authz) as ch:
            srv.wait_serving(lambda: ch.unary_unary(CHECK)(ours[0], timeout=2))
        agree = agreement(world, authz, cerb, 500 if quick else 2000)
        out["agreement"] = agree
        print(f"  agreement: {agree['agreed']:,} of {agree['asked']:,} answers the same "
              f"({agree['examples_asked']} on the example organizations)", flush=True)
        for d in agree["disagreements"]:
            print("   ", d)
        targets = {"echo": (echo, ECHO_METHOD, ours), "authz": (authz, CHECK, ours),
                   "cerbos": (cerb, cerbos.METHOD, theirs)}
        chans = {name: grpc.insecure_channel(t[0]) for name, t in targets.items()}
        out["latency_us"] = {k: {"p50": round(v[0], 1), "p99": round(v[1], 1)}
                             for k, v in measure.latency(chans, targets, n).items()}
        for c in chans.values():
            c.close()
        r32 = measure.rates(targets, seconds, rounds)
        out["rps_32"] = {k: round(v[0], 1) for k, v in r32.items()}
        out["server_cpu_us_per_call_32"] = {k: round(v[1], 1) for k, v in r32.items()}
        client = coalesce.client_factory()
        if client is not None:
            rate, cpu = measure.coalesced_rate(authz, coalesce.asker(ours), seconds, client)
            out["rps_32"]["authz_coalesced"] = round(rate, 1)
            out["server_cpu_us_per_call_32"]["authz_coalesced"] = round(cpu, 1)
        idle = measure.idle_cpu({"echo": srv.PIDS[echo], "authz": srv.PIDS[authz],
                                 "cerbos": srv.PIDS[cerb]}, 2.0 if quick else 5.0)
        out["idle_cpu_ms_per_s"] = {k: round(v, 2) for k, v in idle.items()}
        jobs = _batch_jobs(world, authz, cerb)
        chans2 = jobs.pop("_channels")
        res = measure.batches(jobs, runs, 0.3, idle)
        for c in chans2:
            c.close()
        out["batch_1000"] = {k: {"wall_ms": round(w, 1), "cpu_ms": round(c, 1)}
                             for k, (w, c) in res.items()}


#: Cerbos compiles every policy's CEL when it starts: ~0.6 s of CPU an organization for
#: these policies, so at 1,000 organizations it would not be serving for ~10 minutes.
CERBOS_MAX_ORGS = int(os.environ.get("BENCH_CERBOS_MAX_ORGS", "100"))


def _by_orgs(tmp: Path, quick: bool, out: dict[str, Any]) -> None:
    """Server CPU per call at 32 in flight by organization count: every server up at
    once, rate rounds taking turns between them (load on the machine hits all alike)."""
    counts = (1, 100) if quick else (1, 100, 1000)
    seconds, rounds = (1.5, 2) if quick else (3.0, 2)
    cpu: dict[str, dict[str, float]] = {"authz": {}, "cerbos": {}}
    with contextlib.ExitStack() as stack:
        targets: dict[str, measure.Target] = {}
        for count in counts:
            with_cerbos = count <= CERBOS_MAX_ORGS
            world = build(tmp, count, cerbos=with_cerbos)
            _, ours, theirs = _questions(world, 2000, 99, with_cerbos)
            authz = stack.enter_context(srv.authz_server(world.db_url, world.generated, tmp,
                                                         f"authz-{count}"))
            targets[f"authz/{count}"] = (authz, CHECK, ours)
            if with_cerbos:
                cerb = stack.enter_context(cerbos.server(world.cerbos_policies, tmp, _port(),
                                                         _port(), srv.PIDS))
                targets[f"cerbos/{count}"] = (cerb, cerbos.METHOD, theirs)
            with grpc.insecure_channel(authz) as ch:
                call = ch.unary_unary(CHECK)
                first = ours[0]
                srv.wait_serving(lambda: call(first, timeout=2))  # noqa: B023 (used at once)
                for org_id in world.ids:  # each directory read once before measuring
                    call(srv.to_pb(orgs.request(random.Random(1), org_id, USERS))
                         .SerializeToString(), timeout=30)
        for name, (_, c) in measure.rates(targets, seconds, rounds).items():
            who, count_ = name.split("/")
            cpu[who][count_] = round(c, 1)
    for who, series in cpu.items():
        print(f"  server CPU per call by organization count, {who}: " + ", ".join(
            f"{int(k):,}: {v:.0f} µs" for k, v in series.items()), flush=True)
    out["server_cpu_us_per_call_32_by_orgs"] = cpu


def run(quick: bool = False) -> dict[str, Any]:
    """Run the side-by-side benchmark; returns the figures under `peers`."""
    cerbos.install()
    out: dict[str, Any] = {"cerbos_version": cerbos.VERSION}
    with tempfile.TemporaryDirectory(prefix="authz-bench-peers-") as tmp_:
        tmp = Path(tmp_)
        sections = os.environ.get("BENCH_PEERS", "main,orgs").split(",")
        if "main" in sections:
            _main_world(tmp, quick, out)
        if "orgs" in sections:
            _by_orgs(tmp, quick, out)
    results = {"peers": out}
    if sections != ["main", "orgs"]:  # a section alone, while developing: no table, no merge
        print(json.dumps(out, indent=1))
        return {}
    table.show(results)
    png = plot_peers(results)
    if png:
        print(f"  plot: {png}")
    return results
