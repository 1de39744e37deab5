"""Audit-trail cost on Check latency: strict vs batched vs off, on a real server.

Each mode gets its own `authz serve` process on a fresh SQLite store (seeded like
`make serve`), reached over loopback through the generated stub. A bare gRPC echo server
(same grpc.aio stack, no domain code) gives the floor the batched mode is compared to.
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
from bench.server import interleaved, wait_serving

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


def _caller(call: Callable[[], Any]) -> Callable[[int], Any]:
    """`interleaved` passes the call's index; these calls do not need it."""
    return lambda _i: call()


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
def _authz_server(mode: str) -> Iterator[str]:
    """`authz serve --audit-mode mode` on a fresh store seeded like `make serve`."""
    with tempfile.TemporaryDirectory(prefix="authz-bench-audit-") as tmp:
        url = f"sqlite:///{tmp}/authz.db"
        subprocess.run([AUTHZ, "db", "upgrade", "--db", url], check=True, capture_output=True, env=_env())
        subprocess.run([AUTHZ, "directory", "import", "--db", url, str(DIRECTORY)], check=True,
                       capture_output=True, env=_env())
        address = f"127.0.0.1:{_port()}"
        with open(Path(tmp) / "server.log", "wb") as log:
            proc = subprocess.Popen([AUTHZ, "serve", "--db", url, "--listen", address,
                                     "--log-level", "WARNING", "--audit-mode", mode],
                                    stdout=log, stderr=subprocess.STDOUT, env=_env())
        try:
            yield address
        finally:
            proc.terminate()
            proc.wait(30)


def measure(n: int = 3000, threads: int = 8, per_thread: int = 300) -> dict[str, float]:
    """The figures: Check p50/p99 (µs, one caller, modes taking turns) and Checks/s
    (`threads` callers, one mode at a time) per audit mode, the echo floor, and ratios."""
    req = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="view", module="invoices")
    payload = req.SerializeToString()
    with contextlib.ExitStack() as stack:
        echo_addr = stack.enter_context(_echo_server())
        addresses = {mode: stack.enter_context(_authz_server(mode)) for mode in MODES}
        calls: dict[str, Any] = {}
        echo = stack.enter_context(grpc.insecure_channel(echo_addr)).unary_unary("/bench.Echo/Echo")
        calls["echo"] = lambda _i: echo(payload, timeout=10)
        for mode, address in addresses.items():
            stub = authz_pb2_grpc.AuthzServiceStub(stack.enter_context(grpc.insecure_channel(address)))
            wait_serving(functools.partial(stub.Check, req, timeout=1), timeout=30)
            calls[mode] = _caller(functools.partial(stub.Check, req, timeout=10))
        # Modes take turns call by call so every mode sees the same machine load.
        latency = interleaved(calls, n)
        rates = {mode: _concurrent(address, per_thread, threads) for mode, address in addresses.items()}
    out: dict[str, float] = {}
    out["audit_echo_p50_us"], out["audit_echo_p99_us"] = (round(v, 1) for v in latency["echo"])
    for mode in MODES:
        p50, p99 = latency[mode]
        out[f"audit_{mode}_check_p50_us"] = round(p50, 1)
        out[f"audit_{mode}_check_p99_us"] = round(p99, 1)
        out[f"audit_{mode}_checks_per_s_{threads}_callers"] = round(rates[mode])
    out["audit_batched_vs_off_p50_ratio"] = round(latency["batched"][0] / latency["off"][0], 3)
    out["audit_strict_vs_off_p50_ratio"] = round(latency["strict"][0] / latency["off"][0], 3)
    out["audit_batched_vs_echo_p50_ratio"] = round(latency["batched"][0] / latency["echo"][0], 3)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The `python -m bench` entry point: measure and print."""
    figures = measure(n=500 if quick else 3000, per_thread=50 if quick else 300)
    for key, value in figures.items():
        show(key, value, "")
    return figures


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
