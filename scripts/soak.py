"""Soak: a bounded loopback load at ~80% of measured capacity; reports errors and RSS growth.

    python scripts/soak.py [--seconds 600] [--fraction 0.8] [--concurrency 16]

Starts its own `authz serve` on 127.0.0.1 (SQLite, seeded like `make serve`), measures
capacity with a closed loop (as many Checks as `concurrency` callers get answered in
`--measure` seconds), then paces requests open-loop at `fraction` of that rate for
`--seconds`, sampling the server's resident memory every `--sample` seconds. Growth is
measured from the first sample after warm-up (caches filled) to the last. Loopback only:
it never takes an address, so it cannot be pointed at someone else's server.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from authz_client import AsyncAuthzClient  # noqa: E402
from tests.e2e.serverproc import seed, start_server  # noqa: E402

USERS = ["u-sam", "u-anna", "u-lena", "sam@acme.example", "u-ghost"]
ACTIONS = [("view", "invoices"), ("create", "estimates"), ("approve", "invoices"),
           ("email", "invoices"), ("view", "subscriptions")]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def one(c: AsyncAuthzClient, errors: Counter[str]) -> None:
    action, module = random.choice(ACTIONS)
    r = await c.check("acme-eu", random.choice(USERS), action, module)
    if not r.from_server:
        errors[r.reason] += 1


async def measure(address: str, seconds: float, concurrency: int) -> float:
    errors: Counter[str] = Counter()
    done = 0
    end = time.monotonic() + seconds
    async with AsyncAuthzClient(address, deadline=5) as c:
        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                await one(c, errors)
                done += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / seconds


async def soak(address: str, pid: int, rate: float, seconds: float, sample: float,
               concurrency: int) -> dict[str, object]:
    errors: Counter[str] = Counter()
    sent = 0
    samples: list[tuple[float, int]] = []
    sem = asyncio.Semaphore(concurrency * 4)
    t0 = time.monotonic()
    next_sample = t0
    async with AsyncAuthzClient(address, deadline=5, on_unavailable="raise") as c:
        async def guarded() -> None:
            try:
                await one(c, errors)
            except Exception as exc:
                errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            finally:
                sem.release()

        tasks: set[asyncio.Task[None]] = set()
        while (now := time.monotonic()) - t0 < seconds:
            if now >= next_sample:
                samples.append((now - t0, rss_kib(pid)))
                print(f"  t={now - t0:6.0f}s sent={sent} errors={sum(errors.values())} "
                      f"rss={samples[-1][1] / 1024:.1f} MiB", flush=True)
                next_sample += sample
            due = int((now - t0) * rate) - sent
            for _ in range(max(due, 0)):
                await sem.acquire()
                task = asyncio.create_task(guarded())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    samples.append((time.monotonic() - t0, rss_kib(pid)))
    warm = samples[min(1, len(samples) - 1)][1]
    return {"sent": sent, "achieved_rate": sent / (time.monotonic() - t0), "errors": dict(errors),
            "rss_start_mib": warm / 1024, "rss_end_mib": samples[-1][1] / 1024,
            "rss_growth_mib": (samples[-1][1] - warm) / 1024,
            "rss_growth_pct": 100.0 * (samples[-1][1] - warm) / max(warm, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="soak duration (default 600)")
    ap.add_argument("--fraction", type=float, default=0.8, help="share of capacity (default 0.8)")
    ap.add_argument("--measure", type=float, default=10.0, help="capacity measurement seconds")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sample", type=float, default=30.0, help="RSS sampling interval")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="authz-soak-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'authz.db'}"
        seed(url)
        server = start_server(work, url, "--log-level", "WARNING")
        try:
            capacity = asyncio.run(measure(server.address, args.measure, args.concurrency))
            rate = capacity * args.fraction
            print(f"capacity {capacity:.0f} Checks/s (closed loop, {args.concurrency} callers); "
                  f"soaking at {rate:.0f}/s for {args.seconds:.0f}s", flush=True)
            result = asyncio.run(soak(server.address, server.proc.pid, rate, args.seconds,
                                      args.sample, args.concurrency))
        finally:
            code = server.stop()
    result["capacity"] = capacity
    result["server_exit"] = code
    print("soak result:")
    for k, v in result.items():
        print(f"  {k}: {v:.2f}" if isinstance(v, float) else f"  {k}: {v}")
    return 0 if not result["errors"] and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
