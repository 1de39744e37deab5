"""Measurements taken the same way for every target (echo floor, authz, Cerbos).

One client process; calls carry pre-serialized bytes, so client-side cost is the same
for each target. Latency targets take turns call by call; rate rounds alternate target
by target; server CPU comes from /proc: every thread of the server process and of its
descendants (authz's audit shipper is a child process; its work is part of the cost).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import grpc

from bench import server as srv

Target = tuple[str, str, list[bytes]]  # address, method, payloads


def latency(channels: dict[str, grpc.Channel], targets: dict[str, Target], n: int
            ) -> dict[str, tuple[float, float]]:
    """p50, p99 (µs) of one call at a time, the targets taking turns call by call."""
    calls = {}
    for name, (_, method, payloads) in targets.items():
        call = channels[name].unary_unary(method)
        calls[name] = (lambda c, p: lambda i: c(p[i % len(p)], timeout=10))(call, payloads)
    return srv.interleaved(calls, n)


def rates(targets: dict[str, Target], seconds: float, rounds: int
          ) -> dict[str, tuple[float, float]]:
    """(calls/s, server CPU µs per call) at 32 in flight, best of alternating rounds."""
    best: dict[str, tuple[float, float]] = {name: (0.0, 0.0) for name in targets}
    for _ in range(rounds):
        for name, (address, method, payloads) in targets.items():
            pid = srv.PIDS[address]
            c0, t0 = srv.cpu_seconds(pid), time.perf_counter()
            rate = asyncio.run(srv._rate(address, method, payloads, seconds))
            cpu = (srv.cpu_seconds(pid) - c0) / (rate * (time.perf_counter() - t0)) * 1e6
            if rate > best[name][0]:
                best[name] = (rate, cpu)
    return best


def coalesced_rate(address: str, ask: Callable[[Any, int], Any], seconds: float,
                   make_client: Callable[[str], Any]) -> tuple[float, float]:
    """(calls/s, server CPU µs per call) of 32 concurrent callers through one client that
    coalesces concurrent checks into CheckBatch calls."""
    pid = srv.PIDS[address]

    async def go() -> float:
        client = make_client(address)
        done = 0
        stop = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() < stop:
                await ask(client, i)
                i += srv.IN_FLIGHT
                done += 1

        await asyncio.gather(*(ask(client, k) for k in range(srv.IN_FLIGHT)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(srv.IN_FLIGHT)))
        elapsed = time.perf_counter() - t0
        close = getattr(client, "close", None)
        if close is not None:
            res = close()
            if asyncio.iscoroutine(res):
                await res
        return done / elapsed

    c0, t0 = srv.cpu_seconds(pid), time.perf_counter()
    rate = asyncio.run(go())
    cpu = (srv.cpu_seconds(pid) - c0) / (rate * (time.perf_counter() - t0)) * 1e6
    return rate, cpu


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU ms per second of each server with no calls (after a settling second)."""
    time.sleep(1.0)
    c0 = {name: srv.cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: (srv.cpu_seconds(pid) - c0[name]) * 1e3 / seconds for name, pid in pids.items()}


def audit_shipped(db_url: str) -> Callable[[float], bool]:
    """Waits (up to its timeout) until authz's local audit log for `db_url` is all in the
    store: every segment's cursor at its end. The shipper process does that work after
    the answer, so a batch's CPU is counted until then."""
    from authz.audit import segment

    folder = segment.default_log_dir(db_url)

    def settled(timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while True:
            try:
                if all(segment.shipped(p) >= p.stat().st_size for p in folder.glob("seg-*.log")):
                    return True
            except FileNotFoundError:  # removed meanwhile: shipped
                continue
            if time.perf_counter() > deadline:
                return False
            time.sleep(0.002)

    return settled


def batches(jobs: dict[str, tuple[int, Callable[[], None], Callable[[float], bool] | None]],
            runs: int, pause: float, idle: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(median wall ms, median server CPU ms) of 1,000 decisions per target, taking turns.
    CPU is counted until the server has finished the batch's after-work (its `settled`,
    e.g. authz's audit entries in the store, then `pause`), less what the server burns
    idle over that window."""
    wall: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}
    for _, job, settled in jobs.values():
        job()  # warm
        if settled is not None:
            settled(10.0)
    for _ in range(runs):
        for name, (pid, job, settled) in jobs.items():
            time.sleep(pause)
            c0, t0 = srv.cpu_seconds(pid), time.perf_counter()
            job()
            wall[name].append((time.perf_counter() - t0) * 1e3)
            if settled is not None and not settled(10.0):
                raise RuntimeError(f"{name}: the batch's after-work did not finish in 10 s")
            time.sleep(pause)
            window = time.perf_counter() - t0
            cpu[name].append((srv.cpu_seconds(pid) - c0) * 1e3 - idle.get(name, 0.0) * window)
    return {name: (statistics.median(wall[name]), max(0.0, statistics.median(cpu[name])))
            for name in jobs}
