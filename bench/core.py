"""Decision-core benchmark: latency by organization count, Casbin, differential, cold/reload.

Everything runs in this process against `PolicySet` + `MemoryDirectory` + `Engine`, the
objects the server serves with, over synthetic organizations compiled by the real
compiler into a temporary folder (compiled in worker processes to save wall time).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from authz.decision import CheckRequest
from authz.directory import DirectorySnapshot
from authz.engine import Engine, MemoryDirectory, PolicySet
from authz.engine.decide import decide
from authz.engine.index import load_enforcer
from authz.engine.reference import ReferenceView
from bench import orgcache, orgs
from bench.report import rss_mb, show

ORG_COUNTS = (1, 100, 1_000, 10_000)
USERS = 100
COLD_USERS = 3_000


def _percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1_000


def _timed(check: Callable[[CheckRequest], object], reqs: list[CheckRequest]) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for req in reqs:
        t0 = clock()
        check(req)
        samples.append(clock() - t0)
    samples.sort()
    return samples


def _latencies(engine: Engine, reqs: list[CheckRequest]) -> tuple[float, float, float]:
    """p50 and p99 of engine.check in µs in steady state, and the p50 of the first pass.

    The first pass is each (organization, user)'s first question since its directory
    snapshot was loaded: identity resolution runs, then is cached on the snapshot. The
    second pass, over the same requests, is the steady state of a server whose users keep
    asking (at 10,000 organizations of 100 users, 20,000 random requests would otherwise
    almost never ask about the same user twice)."""
    first = _timed(engine.check, reqs)
    steady = _timed(engine.check, reqs)
    return _percentile(steady, 0.50), _percentile(steady, 0.99), _percentile(first, 0.50)


def _requests(rng: random.Random, ids: list[str], n: int) -> list[CheckRequest]:
    return [orgs.request(rng, rng.choice(ids), USERS) for _ in range(n)]


def _same(req: CheckRequest, a: Any, b: Any) -> bool:
    return bool(dataclasses.replace(a, decision_id="") == dataclasses.replace(b, decision_id=""))


def differential(generated: Path, ids: list[str], per_org: int, seed: int
                 ) -> tuple[int, int, list[str]]:
    """decide() over the index vs over the Casbin reference (filtered enforce)."""
    asked = mismatched = 0
    examples: list[str] = []
    policies = PolicySet(generated)
    roles = orgs.role_ids(orgs.shared_tree(), orgs.Shape())
    rng = random.Random(seed)
    for org_id in ids:
        idx = policies.get(org_id)
        snap = orgs.directory(org_id, roles, USERS)
        ref = ReferenceView.load(generated / "orgs" / f"{org_id}.csv",
                                 generated / "orgs" / f"{org_id}.json", snap, filtered=True)
        for req in _requests(rng, [org_id], per_org):
            a = decide(req, idx, snap)
            b = decide(req, idx, snap, view=ref.for_request(req))
            asked += 1
            if not _same(req, a, b):
                mismatched += 1
                if len(examples) < 3:
                    examples.append(f"{req}\n  index:     {a}\n  reference: {b}")
    return asked, mismatched, examples


def _differential_job(args: tuple[Path, list[str], int, int]) -> tuple[int, int, list[str]]:
    return differential(*args)


def parallel_differential(generated: Path, ids: list[str], per_org: int, seed: int,
                          workers: int = 2) -> tuple[int, int, list[str]]:
    """The differential run split over worker processes (Casbin enforce is the slow side)."""
    jobs = [(generated, ids[w::workers], per_org, seed + w) for w in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_differential_job, jobs))
    return (sum(p[0] for p in parts), sum(p[1] for p in parts),
            [e for p in parts for e in p[2]][:3])


def _casbin_p50(generated: Path, org_id: str, rng: random.Random, n: int) -> float:
    """pycasbin enforce on one organization's full policy, asked as a role."""
    enforcer = load_enforcer(generated / "orgs" / f"{org_id}.csv")
    lines = enforcer.get_named_policy("p")
    samples = []
    for _ in range(n):
        sub, prod, mod, act, _scope, _chan = rng.choice(lines)
        if rng.random() < 0.5:
            act = rng.choice(("approve", "write_off", "view", "edit"))
        t0 = time.perf_counter_ns()
        enforcer.enforce(sub, prod, mod, act, "yes", "crm")
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return _percentile(samples, 0.5)


def _timed_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def cold_org(policies: PolicySet, out: Path, rng: random.Random, runs: int = 5) -> float:
    """First decision in an organization nobody has asked about yet (3,000 users):
    compiled policy load + index build + directory snapshot build + first decide."""
    orgs.write_orgs(out, 0, runs, name="cold")
    roles = orgs.role_ids(orgs.shared_tree(), orgs.Shape())
    times = []
    for n in range(runs):
        org_id = orgs.org_name(n, "cold")
        lists = orgs.directory_lists(org_id, roles, COLD_USERS)  # rows as the store returns them
        req = orgs.request(rng, org_id, COLD_USERS)
        t0 = time.perf_counter()
        idx = policies.load(org_id)
        snap = DirectorySnapshot.build(org_id, 1, *lists)
        decide(req, idx, snap)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the decision-core benchmark; returns the figures for bench/results/latest.json."""
    counts = ORG_COUNTS[:3] if quick else ORG_COUNTS
    per_level = 20_000 if not quick else 5_000
    rng = random.Random(20251124)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="authz-bench-") as tmp:
        out = Path(tmp) / "generated"
        orgs.write_orgs(out, 0, 0)  # model.conf; organizations are compiled on demand
        policies = PolicySet(out, cache_size=counts[-1] + 100)
        directory = MemoryDirectory()
        engine = Engine(policies, directory)
        roles = orgs.role_ids(orgs.shared_tree(), orgs.Shape())
        ids = [orgs.org_name(n) for n in range(counts[-1])]
        rss_before = rss_mb()
        t0 = time.perf_counter()
        for idx in orgcache.indexes(counts[-1]):
            policies.put(idx)
            directory.put(orgs.directory(idx.org_id, roles, USERS))
        loaded = counts[-1]
        print(f"  {loaded:,} organizations ({orgs.Shape()}) compiled and indexed (or read "
              f"from bench/.cache), {USERS}-user directories built, in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        # Casbin, the differential and reload read compiled files: a random sample and org 0.
        sample = random.Random(7).sample(ids, min(20, len(ids)))
        orgcache.ensure_compiled(out, [0, *(int(i.rsplit("-", 1)[1]) for i in sample)])
        p50s: dict[str, float] = {}
        p99s: dict[str, float] = {}
        firsts: dict[str, float] = {}
        for count in counts:
            p50, p99, first = _latencies(engine, _requests(rng, ids[:count], per_level))
            p50s[str(count)], p99s[str(count)] = round(p50, 2), round(p99, 2)
            firsts[str(count)] = round(first, 2)
            show(f"decision p50 at {count:,} orgs", p50, "µs", target=10.0)
            show(f"decision p99 at {count:,} orgs", p99, "µs")
            show(f"decision p50 at {count:,} orgs, user's first question", first, "µs")
        rss_per_1000 = (rss_mb() - rss_before) / (loaded / 1000)
        results["decision_p50_us_by_orgs"] = p50s
        results["decision_p99_us_by_orgs"] = p99s
        results["decision_first_question_p50_us_by_orgs"] = firsts
        spread = max(p50s.values()) / min(p50s.values())
        show(f"p50 spread {counts[0]} → {counts[-1]:,} orgs", spread, "×", target=1.5)
        results["rss_mb_per_1000_orgs"] = round(rss_per_1000, 1)
        show("RSS per 1,000 orgs (policy index + directory)", rss_per_1000, "MB")

        casbin_p50 = _casbin_p50(out, ids[0], rng, 60 if quick else 200)
        results["casbin_enforce_p50_us"] = round(casbin_p50, 1)
        show("pycasbin enforce p50 (one org, full policy)", casbin_p50, "µs")
        speedup = casbin_p50 / max(p50s.values())
        results["speedup_vs_casbin"] = round(speedup, 1)
        show("speedup vs casbin (worst decision p50)", speedup, "×", target=200, higher=True)

        per_org = (20_000 if quick else 100_000) // len(sample) + 1
        t0 = time.perf_counter()
        asked, bad, examples = parallel_differential(out, sample, per_org, rng.randrange(2**31))
        results["differential_requests"] = asked
        results["differential_mismatches"] = bad
        show(f"differential mismatches over {asked:,} requests ({len(sample)} orgs, "
             f"{time.perf_counter() - t0:.0f} s)", bad, "", target=0)
        for ex in examples:
            print(ex)

        cold = cold_org(policies, out, rng)
        results["cold_org_3000_users_ms"] = round(cold, 2)
        show(f"cold org, {COLD_USERS:,} users: load + index + directory + first decide", cold,
             "ms", target=20.0)
        reloads = [_timed_ms(lambda: policies.load(ids[0])) for _ in range(10)]
        reload_ms = statistics.median(reloads)
        results["org_reload_ms"] = round(reload_ms, 2)
        show("org reload", reload_ms, "ms", target=50.0)
    return results
