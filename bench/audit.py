"""Audit-trail cost on Check latency: strict vs batched vs off, on a real server.

Each mode gets its own `authz serve` process on a fresh SQLite store (seeded like
`make serve`), reached over loopback through the generated stub. A bare gRPC echo server
(same grpc.aio stack, no domain code) gives the floor the batched mode is compared to.
`python -m bench --parts audit` runs it and merges the figures into results/latest.json.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from bench.report import show

REPO = Path(__file__).resolve().parents[1]
AUTHZ = str(Path(sys.executable).parent / "authz")
DIRECTORY = REPO / "authz/policies/orgs/acme-eu/tests/directory.yaml"
MODES = ("off", "batched", "strict")
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


def _wait(address: str, call: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _p(samples: list[int], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] / 1_000


def _sequential(call: Any, n: int) -> tuple[float, float]:
    """p50, p99 in µs of n calls one after the other, after a warm-up."""
    for _ in range(max(50, n // 10)):
        call()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        call()
        samples.append(clock() - t0)
    samples.sort()
    return _p(samples, 0.50), _p(samples, 0.99)


def _concurrent(address: str, n: int, threads: int) -> float:
    """Checks per second with `threads` callers, each on its own channel."""
    def work(user: str) -> None:
        with grpc.insecure_channel(address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)
            req = pb.CheckRequest(org_id="acme-eu", user=user, action="view", module="invoices")
            for _ in range(n):
                stub.Check(req, timeout=10)

    pool = [threading.Thread(target=work, args=(USERS[i % len(USERS)],)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return n * threads / (time.perf_counter() - t0)


def _echo_p50(n: int) -> tuple[float, float]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", _ECHO, str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            echo = ch.unary_unary("/bench.Echo/Echo")
            payload = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view",
                                      module="invoices").SerializeToString()
            return _sequential(lambda: echo(payload, timeout=10), n)
    finally:
        proc.terminate()
        proc.wait(10)


def _mode(mode: str, n: int, threads: int, per_thread: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="authz-bench-audit-") as tmp:
        url = f"sqlite:///{tmp}/authz.db"
        subprocess.run([AUTHZ, "db", "upgrade", "--db", url], check=True, capture_output=True, env=_env())
        subprocess.run([AUTHZ, "directory", "import", "--db", url, str(DIRECTORY)], check=True,
                       capture_output=True, env=_env())
        port = _port()
        address = f"127.0.0.1:{port}"
        with open(Path(tmp) / "server.log", "wb") as log:
            proc = subprocess.Popen([AUTHZ, "serve", "--db", url, "--listen", address,
                                     "--log-level", "WARNING", "--audit-mode", mode],
                                    stdout=log, stderr=subprocess.STDOUT, env=_env())
        try:
            with grpc.insecure_channel(address) as ch:
                stub = authz_pb2_grpc.AuthzServiceStub(ch)
                req = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view", module="invoices")
                _wait(address, lambda: stub.Check(req, timeout=1))
                p50, p99 = _sequential(lambda: stub.Check(req, timeout=10), n)
            rate = _concurrent(address, per_thread, threads)
        finally:
            proc.terminate()
            proc.wait(30)
    return {"p50": p50, "p99": p99, "rate": rate}


def measure(n: int = 3000, threads: int = 8, per_thread: int = 300) -> dict[str, float]:
    """The figures: Check p50/p99 (µs, one caller) and Checks/s (`threads` callers) per
    audit mode, the echo floor, and batched p50 over echo p50."""
    out: dict[str, float] = {}
    echo50, echo99 = _echo_p50(n)
    out["audit_echo_p50_us"], out["audit_echo_p99_us"] = round(echo50, 1), round(echo99, 1)
    for mode in MODES:
        r = _mode(mode, n, threads, per_thread)
        out[f"audit_{mode}_check_p50_us"] = round(r["p50"], 1)
        out[f"audit_{mode}_check_p99_us"] = round(r["p99"], 1)
        out[f"audit_{mode}_checks_per_s_{threads}_callers"] = round(r["rate"])
    out["audit_batched_vs_echo_p50_ratio"] = round(out["audit_batched_check_p50_us"] / echo50, 3)
    out["audit_strict_vs_off_p50_ratio"] = round(out["audit_strict_check_p50_us"]
                                                 / out["audit_off_check_p50_us"], 3)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The `python -m bench` entry point: measure and print."""
    figures = measure(n=500 if quick else 3000, per_thread=50 if quick else 300)
    for key, value in figures.items():
        show(key, value, "")
    return figures


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
