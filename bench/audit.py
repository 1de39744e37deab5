"""Audit-trail cost on Check latency and server CPU: strict vs batched vs off, each
batched/strict mode on both pipelines (the local log, and the in-memory queue), on a
real server.

Each target gets its own `authz serve` process on a fresh SQLite store (seeded like
`make serve`), reached over loopback through the generated stub. Server CPU per Check is
the server process's CPU (every thread, /proc schedstat) from the start of the concurrent
load until the trail has caught up (the shipper or writer finished), over the Checks sent.
A bare gRPC echo server (same grpc.aio stack, no domain code) gives the floor the batched
mode is compared to.
`python -m bench --parts audit` runs it and merges the figures into results/latest.json.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from bench.report import show
from bench.server import cpu_seconds, interleaved, thread_cpu_seconds, wait_serving

REPO = Path(__file__).resolve().parents[1]
AUTHZ = str(Path(sys.executable).parent / "authz")
DIRECTORY = REPO / "authz/policies/orgs/acme-eu/tests/directory.yaml"
MODES = ("off", "batched", "strict")
# target name -> (audit mode, pipeline, shipper); "log" ships from a process of its own
TARGETS = {"off": ("off", "log", "process"),
           "batched_queue": ("batched", "queue", "thread"),
           "batched_log_thread": ("batched", "log", "thread"),
           "batched_log": ("batched", "log", "process"),
           "strict_queue": ("strict", "queue", "thread"),
           "strict_log": ("strict", "log", "process")}
USERS = ("u-sam", "u-paul", "u-ivy", "u-anna", "u-lena", "u-fiona")

_ECHO = """
import asyncio, sys, grpc
async def main():
    server = grpc.aio.server()
    echo = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": echo}),))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
async def _echo(req, ctx):
    return req
asyncio.run(main())
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}


def _caller(call: Callable[[], Any]) -> Callable[[int], Any]:
    """`interleaved` passes the call's index; these calls do not need it."""
    return lambda _i: call()


def _family_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the server process alone, and of its descendants (the shipper)."""
    own = thread_cpu_seconds(pid)
    return own, cpu_seconds(pid) - own


def _concurrent(address: str, pid: int, n: int, threads: int) -> tuple[float, float, float]:
    """Checks per second with `threads` callers, each on its own channel; and the CPU per
    Check (µs) of the server process and of its shipper process, counted until the trail
    caught up after the last answer."""
    def work(user: str) -> None:
        with grpc.insecure_channel(address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            req = pb.CheckRequest(org_id="acme-eu", user=user, action="view", module="invoices")
            for _ in range(n):
                stub.Check(req, timeout=10)

    pool = [threading.Thread(target=work, args=(USERS[i % len(USERS)],)) for i in range(threads)]
    (c0, k0), t0 = _family_cpu(pid), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    rate = n * threads / (time.perf_counter() - t0)
    last, settled = _family_cpu(pid), time.perf_counter() + 5
    while time.perf_counter() < settled:  # until the writer/shipper is done (CPU flat)
        time.sleep(0.3)
        now = _family_cpu(pid)
        if sum(now) - sum(last) < 0.002:
            break
        last = now
    calls = n * threads
    return rate, (last[0] - c0) / calls * 1e6, (last[1] - k0) / calls * 1e6


@contextlib.contextmanager
def _echo_server() -> Iterator[str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", _ECHO, str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def _authz_server(mode: str, pipeline: str, shipper: str) -> Iterator[tuple[str, int]]:
    """`authz serve --audit-mode mode` (audit_pipeline `pipeline`, audit_shipper `shipper`)
    on a fresh store seeded like `make serve`; yields its address and process id."""
    with tempfile.TemporaryDirectory(prefix="authz-bench-audit-") as tmp:
        url = f"sqlite:///{tmp}/authz.db"
        subprocess.run([AUTHZ, "db", "upgrade", "--db", url], check=True, capture_output=True, env=_env())
        subprocess.run([AUTHZ, "directory", "import", "--db", url, str(DIRECTORY)], check=True,
                       capture_output=True, env=_env())
        address = f"127.0.0.1:{_port()}"
        with open(Path(tmp) / "server.log", "wb") as log:
            proc = subprocess.Popen([AUTHZ, "serve", "--db", url, "--listen", address,
                                     "--log-level", "WARNING", "--audit-mode", mode],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env={**_env(), "AUTHZ_AUDIT_PIPELINE": pipeline,
                                         "AUTHZ_AUDIT_SHIPPER": shipper})
        try:
            yield address, proc.pid
        finally:
            proc.terminate()
            proc.wait(30)


def measure(n: int = 3000, threads: int = 8, per_thread: int = 300) -> dict[str, float]:
    """The figures: Check p50/p99 (µs, one caller, targets taking turns), Checks/s and
    server CPU per Check (`threads` callers, one target at a time) per audit mode and
    pipeline, the echo floor, and ratios."""
    req = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view", module="invoices")
    payload = req.SerializeToString()
    with contextlib.ExitStack() as stack:
        echo_addr = stack.enter_context(_echo_server())
        servers = {name: stack.enter_context(_authz_server(*target))
                   for name, target in TARGETS.items()}
        calls: dict[str, Any] = {}
        echo = stack.enter_context(grpc.insecure_channel(echo_addr)).unary_unary("/bench.Echo/Echo")
        calls["echo"] = lambda _i: echo(payload, timeout=10)
        for name, (address, _pid) in servers.items():
            stub = authz_pb2_grpc.AuthzServiceStub(stack.enter_context(grpc.insecure_channel(address)))
            wait_serving(functools.partial(stub.Check, req, timeout=1), timeout=30)
            calls[name] = _caller(functools.partial(stub.Check, req, timeout=10))
        # Targets take turns call by call so every one sees the same machine load.
        latency = interleaved(calls, n)
        loads = {name: _concurrent(address, pid, per_thread, threads)
                 for name, (address, pid) in servers.items()}
    out: dict[str, float] = {}
    out["audit_echo_p50_us"], out["audit_echo_p99_us"] = (round(v, 1) for v in latency["echo"])
    for name in TARGETS:
        p50, p99 = latency[name]
        out[f"audit_{name}_check_p50_us"] = round(p50, 1)
        out[f"audit_{name}_check_p99_us"] = round(p99, 1)
        out[f"audit_{name}_checks_per_s_{threads}_callers"] = round(loads[name][0])
        out[f"audit_{name}_server_cpu_us_per_check_{threads}_callers"] = round(loads[name][1], 1)
        if name.endswith("_log"):
            out[f"audit_{name}_shipper_cpu_us_per_check_{threads}_callers"] = round(
                loads[name][2], 1)
    for name in TARGETS:
        if name != "off":
            out[f"audit_{name}_vs_off_p50_ratio"] = round(latency[name][0] / latency["off"][0], 3)
            out[f"audit_{name}_extra_server_cpu_us_per_check"] = round(
                loads[name][1] - loads["off"][1], 1)
    out["audit_batched_log_vs_echo_p50_ratio"] = round(
        latency["batched_log"][0] / latency["echo"][0], 3)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The `python -m bench` entry point: measure and print."""
    figures = measure(n=500 if quick else 3000, per_thread=150 if quick else 300)
    for key, value in figures.items():
        show(key, value, "")
    return figures


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
