"""Server benchmark: our server as it ships against a bare echo of the same transport.

Servers run as their own processes on loopback; this process is the one client for all of
them (generated stubs). `authz serve` runs with its default configuration (audit batched,
the gate interceptor, reload and health watchers on) over synthetic organizations
compiled by the real compiler and a SQLite store seeded with their directories.

- one call at a time: echo and Check take turns call by call (a loaded machine then
  weighs on both alike), p50 and p99;
- 32 calls in flight (grpc.aio client, one channel), calls/s, rounds alternating;
- CheckBatch of 1,000 items, median wall time of a call;
- server CPU always counts the server's whole process tree (cpu_seconds): the audit
  shipper and `--workers` processes are children of `authz serve`;
- serving models, measured the same way: grpc.aio deciding inline (the default),
  grpc.aio with every decision in the thread pool, a synchronous grpc.server with a
  thread pool (bench/servers.py), and `--workers 2` (two processes, SO_REUSEPORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from authz.decision import CheckRequest
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from bench import orgs
from bench.report import show
from bench.servers import ECHO_METHOD

AUTHZ = str(Path(sys.executable).parent / "authz")
ORGS = 20
USERS = 100
IN_FLIGHT = 32


#: Server process id by address; its CPU is counted with all its descendants (cpu_seconds).
PIDS: dict[str, int] = {}


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of one process, all its threads (Linux /proc): the scheduler's nanosecond
    run time per thread (/proc/PID/task/*/schedstat), since /proc/PID/stat counts in
    10 ms ticks, coarser than a batch of 1,000 decisions."""
    total = 0
    try:
        with os.scandir(f"/proc/{pid}/task") as tasks:
            for task in tasks:
                with contextlib.suppress(OSError):
                    total += int(Path(task.path, "schedstat").read_text().split()[0])
        return total / 1e9
    except OSError:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat fields after the command name (field 3, the state, is [0])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every live descendant of a process (children, their children, ...), by the parent
    id in /proc/*/stat (/proc/PID/task/*/children needs a kernel option not always on)."""
    kids: dict[int, list[int]] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    kids.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = list(kids.get(pid, ()))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(kids.get(child, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of a server and its whole process tree: the audit shipper (`authz audit
    ship --follow`) and `--workers` are child processes, and their work is the server's
    cost. Live processes by their threads' run time; children already exited and waited
    for by their parents' cutime + cstime (10 ms ticks)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(p)
            total += thread_cpu_seconds(p) + (int(fields[13]) + int(fields[14])) / tick
    return total


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(extra)
    return env


def to_pb(req: CheckRequest) -> pb.CheckRequest:
    """A domain request as the wire message a CRM component would send."""
    rec = req.record
    msg = pb.CheckRequest(
        org_id=req.org_id, user=req.user, action=req.action, module=req.module,
        product=req.product, write_fields=req.write_fields, read_fields=req.read_fields,
        channel=pb.CHANNEL_DIRECT if req.channel.value == "direct" else pb.CHANNEL_CRM,
        record=pb.Record(record_id=rec.record_id, owner=rec.owner, status=rec.status,
                         approval_level=rec.approval_level, created_by=rec.created_by,
                         location=rec.location))
    if rec.total is not None:
        msg.record.total.value = rec.total
    return msg


def _setup(tmp: Path) -> tuple[str, Path]:
    """Compiled synthetic organizations and a SQLite store holding their directories."""
    generated = tmp / "generated"
    orgs.write_orgs(generated, 0, ORGS)
    url = f"sqlite:///{tmp}/authz.db"
    subprocess.run([AUTHZ, "db", "upgrade", "--db", url], check=True, capture_output=True,
                   env=_env())
    from authz.store import open_store

    store = open_store(url)
    roles = orgs.role_ids(orgs.shared_tree(), orgs.Shape())
    for n in range(ORGS):
        org_id = orgs.org_name(n)
        store.import_directory(org_id, *orgs.directory_lists(org_id, roles, USERS))
    store.close()
    return url, generated


@contextlib.contextmanager
def _process(args: list[str], ready_line: bool, address: str, tmp: Path, name: str,
             env: dict[str, str] | None = None) -> Iterator[str]:
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE if ready_line else log,
                            stderr=log, env=env or _env())
    PIDS[address] = proc.pid
    try:
        if ready_line:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", name
        yield address
    finally:
        PIDS.pop(address, None)
        proc.terminate()
        proc.wait(30)
        log.close()


@contextlib.contextmanager
def echo_server(model: str, tmp: Path) -> Iterator[str]:
    port = _port()
    with _process([sys.executable, "-m", "bench.servers", f"echo-{model}", str(port)], True,
                  f"127.0.0.1:{port}", tmp, f"echo-{model}") as address:
        yield address


@contextlib.contextmanager
def authz_server(url: str, generated: Path, tmp: Path, name: str, workers: int = 1,
                 inline: bool = True) -> Iterator[str]:
    """`authz serve` as it ships (only the serving-model switches differ)."""
    address = f"127.0.0.1:{_port()}"
    args = [AUTHZ, "serve", "--db", url, "--policy-dir", str(generated), "--listen", address,
            "--log-level", "WARNING"]
    if workers > 1:
        args += ["--workers", str(workers)]
    env = _env(AUTHZ_DECIDE_INLINE="true" if inline else "false")
    with _process(args, False, address, tmp, name, env) as addr:
        yield addr


@contextlib.contextmanager
def sync_server(url: str, generated: Path, tmp: Path) -> Iterator[str]:
    port = _port()
    with _process([sys.executable, "-m", "bench.servers", "sync-check", str(port), url,
                   str(generated)], True, f"127.0.0.1:{port}", tmp, "sync-check") as address:
        yield address


def wait_serving(call: Callable[[], Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _p(samples: list[int], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] / 1_000


def interleaved(calls: dict[str, Callable[[int], Any]], n: int) -> dict[str, tuple[float, float]]:
    """p50, p99 (µs) per named call; the calls take turns call by call."""
    for i in range(max(100, n // 10)):
        for call in calls.values():
            call(i)
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {name: [] for name in calls}
    for i in range(n):
        for name, call in calls.items():
            t0 = clock()
            call(i)
            samples[name].append(clock() - t0)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = (_p(values, 0.50), _p(values, 0.99))
    return out


async def _rate(address: str, method: str, payloads: list[bytes], seconds: float) -> float:
    """Calls/s with IN_FLIGHT calls outstanding on one channel, over `seconds`."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.unary_unary(method)
        done = 0
        stop = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() < stop:
                await call(payloads[i % len(payloads)], timeout=30)
                i += IN_FLIGHT
                done += 1

        for k in range(IN_FLIGHT):  # warm the channel
            await call(payloads[k], timeout=30)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
        return done / (time.perf_counter() - t0)


def rates(targets: dict[str, tuple[str, str]], payloads: list[bytes], seconds: float,
          rounds: int, cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Best calls/s of each target over `rounds` alternating rounds. With `cpu`, also the
    server process's CPU µs per call in its best round (where the time goes when the
    server, not the client, is what limits the rate)."""
    best = dict.fromkeys(targets, 0.0)
    for _ in range(rounds):
        for name, (address, method) in targets.items():
            pid = PIDS.get(address)
            c0, t0 = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
            rate = asyncio.run(_rate(address, method, payloads, seconds))
            if rate > best[name]:
                best[name] = rate
                if cpu is not None and pid:
                    calls = rate * (time.perf_counter() - t0)
                    cpu[name] = (cpu_seconds(pid) - c0) / calls * 1e6
    return best


def batch_ms(stub: authz_pb2_grpc.AuthzServiceStub, msgs: list[pb.CheckRequest],
             runs: int, pause: float) -> float:
    """Median wall time of one CheckBatch of 1,000 items. With `pause`, each call starts
    once the audit writer has recorded the previous batch (~0.2 s of its own CPU): the
    latency of a batch, not the throughput of back-to-back batches (pause 0)."""
    batch = pb.CheckBatchRequest(requests=msgs[:1000])
    stub.CheckBatch(batch, timeout=30)
    times = []
    for _ in range(runs):
        time.sleep(pause)
        t0 = time.perf_counter()
        resp = stub.CheckBatch(batch, timeout=30)
        times.append((time.perf_counter() - t0) * 1e3)
        assert len(resp.results) == len(batch.requests)
    return statistics.median(times)


CHECK = "/authz.v1.AuthzService/Check"


def _model(addr_echo: str, addr_check: str, msgs: list[pb.CheckRequest], payloads: list[bytes],
           n: int, seconds: float, rounds: int) -> dict[str, float]:
    """One serving model against its own echo floor: latency, rate, batch."""
    with grpc.insecure_channel(addr_echo) as ech, grpc.insecure_channel(addr_check) as chk:
        echo = ech.unary_unary(ECHO_METHOD)
        stub = authz_pb2_grpc.AuthzServiceStub(chk)
        wait_serving(lambda: stub.Check(msgs[0], timeout=2))
        lat = interleaved({
            "echo": lambda i: echo(payloads[i % len(payloads)], timeout=10),
            "check": lambda i: stub.Check(msgs[i % len(msgs)], timeout=10),
        }, n)
        cpu: dict[str, float] = {}
        rps = rates({"echo": (addr_echo, ECHO_METHOD), "check": (addr_check, CHECK)},
                    payloads, seconds, rounds, cpu)
        runs = 7 if n < 2000 else 15
        batch = batch_ms(stub, msgs, runs, 0.5)
        back_to_back = batch_ms(stub, msgs, runs, 0.0)
    return {"batch_1000_ms_back_to_back": back_to_back,
            "echo_server_cpu_us_per_call_32": cpu.get("echo", 0.0),
            "check_server_cpu_us_per_call_32": cpu.get("check", 0.0),
            "echo_p50_us": lat["echo"][0], "echo_p99_us": lat["echo"][1],
            "check_p50_us": lat["check"][0], "check_p99_us": lat["check"][1],
            "echo_rps_32": rps["echo"], "check_rps_32": rps["check"], "batch_1000_ms": batch}


def _ratios(f: dict[str, float]) -> dict[str, float]:
    return {"check_p50_ratio": f["check_p50_us"] / f["echo_p50_us"],
            "check_p99_ratio": f["check_p99_us"] / f["echo_p99_us"],
            "rps_ratio_32": f["check_rps_32"] / f["echo_rps_32"]}


def run(quick: bool = False) -> dict[str, Any]:
    """Run the server benchmark; returns the figures for bench/results/latest.json."""
    n, seconds, rounds = (1000, 1.5, 1) if quick else (4000, 3.0, 2)
    rng = random.Random(20251124)
    ids = [orgs.org_name(k) for k in range(ORGS)]
    msgs = [to_pb(orgs.request(rng, rng.choice(ids), USERS)) for _ in range(2000)]
    payloads = [m.SerializeToString() for m in msgs]
    models: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="authz-bench-server-") as tmp_:
        tmp = Path(tmp_)
        url, generated = _setup(tmp)
        with echo_server("aio", tmp) as echo:
            with authz_server(url, generated, tmp, "inline") as addr:
                models["aio_inline"] = _model(echo, addr, msgs, payloads, n, seconds, rounds)
            with authz_server(url, generated, tmp, "executor", inline=False) as addr:
                models["aio_executor"] = _model(echo, addr, msgs, payloads, n // 2, seconds, 1)
            with authz_server(url, generated, tmp, "workers2", workers=2) as addr:
                with grpc.insecure_channel(addr) as ch:
                    stub = authz_pb2_grpc.AuthzServiceStub(ch)
                    wait_serving(lambda: stub.Check(msgs[0], timeout=2))
                w2 = rates({"echo": (echo, ECHO_METHOD), "check": (addr, CHECK)}, payloads,
                           seconds, 1)
        with echo_server("sync", tmp) as echo, sync_server(url, generated, tmp) as addr:
            models["sync_threadpool"] = _model(echo, addr, msgs, payloads, n // 2, seconds, 1)
    for f in models.values():
        f.update(_ratios(f))
    main = models["aio_inline"]
    out: dict[str, Any] = {k: round(v, 3 if "ratio" in k else 1) for k, v in main.items()}
    out["check_rps_32_workers_2"] = round(w2["check"], 1)
    out["rps_ratio_32_workers_2"] = round(w2["check"] / w2["echo"], 3)
    out["serving_model_comparison"] = {
        name: {k: round(v, 3 if "ratio" in k else 1) for k, v in f.items()}
        for name, f in models.items()}
    out["serving_model"] = "aio_inline"
    _print(out)
    return out


def _print(out: dict[str, Any]) -> None:
    show("echo p50 (one call at a time)", out["echo_p50_us"], "µs")
    show("echo p99", out["echo_p99_us"], "µs")
    show("Check p50", out["check_p50_us"], "µs")
    show("Check p99", out["check_p99_us"], "µs")
    show("Check/echo p50", out["check_p50_ratio"], "×", target=1.15)
    show("Check/echo p99", out["check_p99_ratio"], "×", target=1.3)
    show(f"echo calls/s, {IN_FLIGHT} in flight", out["echo_rps_32"], "/s")
    show(f"Check calls/s, {IN_FLIGHT} in flight", out["check_rps_32"], "/s")
    show("Check/echo calls/s", out["rps_ratio_32"], "×", target=0.9, higher=True)
    show("Check calls/s with --workers 2", out["check_rps_32_workers_2"], "/s")
    show("echo server CPU per call (32 in flight)", out["echo_server_cpu_us_per_call_32"], "µs")
    show("Check server CPU per call (32 in flight)", out["check_server_cpu_us_per_call_32"],
         "µs")
    show("CheckBatch of 1,000", out["batch_1000_ms"], "ms", target=15.0)
    show("CheckBatch of 1,000, back to back", out["batch_1000_ms_back_to_back"], "ms")
    for name, f in out["serving_model_comparison"].items():
        print(f"  model {name}: p50 {f['check_p50_us']} µs ({f['check_p50_ratio']}× echo), "
              f"p99 {f['check_p99_us']} µs ({f['check_p99_ratio']}×), "
              f"{f['check_rps_32']}/s ({f['rps_ratio_32']}×), batch {f['batch_1000_ms']} ms")


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
