"""The Cerbos PDP as a benchmark peer: installed from npm, started on loopback ports.

`install()` puts the `@cerbos/cerbos-linux-x64` binary into bench/.peers/ (ignored by
git) with `npm install`, once; `stubs()` compiles bench/peers/cerbos_check.proto (the
CheckResources part of Cerbos's public API, same field numbers) into the same folder;
`server()` writes a configuration (disk store over the generated policies, audit and
telemetry off, 500 resources a request) and runs `cerbos server` until the block ends.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import json_format

PACKAGE = "@cerbos/cerbos-linux-x64"
VERSION = "0.55.0"
HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / ".peers"
METHOD = "/cerbos.svc.v1.CerbosService/CheckResources"


def install() -> Path:
    """The Cerbos binary, installed with npm into bench/.peers/ on first use."""
    binary = PEERS / "node_modules" / "@cerbos" / "cerbos-linux-x64" / "cerbos-linux-x64"
    if not binary.exists():
        PEERS.mkdir(parents=True, exist_ok=True)
        print(f"  installing {PACKAGE}@{VERSION} with npm into {PEERS}", flush=True)
        subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                        str(PEERS), f"{PACKAGE}@{VERSION}"], check=True, capture_output=True)
    binary.chmod(0o755)
    return binary


def stubs() -> ModuleType:
    """The generated messages of cerbos_check.proto (compiled into bench/.peers/)."""
    out = PEERS / "stubs"
    target = out / "cerbos_check_pb2.py"
    src = HERE / "cerbos_check.proto"
    if not target.exists() or target.stat().st_mtime < src.stat().st_mtime:
        out.mkdir(parents=True, exist_ok=True)
        from grpc_tools import protoc

        include = Path(protoc.__file__).parent / "_proto"
        rc = protoc.main(["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out}",
                          str(src)])
        if rc != 0:
            raise RuntimeError("protoc failed on cerbos_check.proto")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("cerbos_check_pb2")


def request(pb: ModuleType, principal: dict[str, Any], entries: list[tuple[dict[str, Any], str]],
            request_id: str = "") -> Any:
    """A CheckResourcesRequest: one principal, (resource, action) entries."""
    msg = pb.CheckResourcesRequest(request_id=request_id)
    json_format.ParseDict(principal, msg.principal)
    for res, action in entries:
        entry = msg.resources.add(actions=[action])
        json_format.ParseDict(res, entry.resource)
    return msg


def _config(folder: Path, policies: Path, grpc_port: int, http_port: int) -> Path:
    config = {
        "server": {"httpListenAddr": f"127.0.0.1:{http_port}",
                   "grpcListenAddr": f"127.0.0.1:{grpc_port}",
                   "requestLimits": {"maxActionsPerResource": 50,
                                     "maxResourcesPerRequest": 500}},
        "storage": {"driver": "disk", "disk": {"directory": str(policies),
                                               "watchForChanges": False}},
        "audit": {"enabled": False},
        "telemetry": {"disabled": True},
    }
    path = folder / "cerbos.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@contextlib.contextmanager
def server(policies: Path, folder: Path, grpc_port: int, http_port: int,
           pids: dict[str, int]) -> Iterator[str]:
    """`cerbos server` over `policies`; yields its gRPC address once it answers."""
    binary = install()
    address = f"127.0.0.1:{grpc_port}"
    log = open(folder / "cerbos.log", "wb")  # noqa: SIM115 (closed below)
    env = {**os.environ, "CERBOS_NO_TELEMETRY": "1"}
    config = _config(folder, policies, grpc_port, http_port)
    proc = subprocess.Popen([str(binary), "server", f"--config={config}", "--log-level=warn"],
                            stdout=log, stderr=log, env=env)
    pids[address] = proc.pid
    try:
        _wait(address, proc, folder)
        yield address
    finally:
        pids.pop(address, None)
        proc.terminate()
        proc.wait(30)
        log.close()


def _wait(address: str, proc: subprocess.Popen[bytes], folder: Path, timeout: float = 120) -> None:
    pb = stubs()
    probe = pb.CheckResourcesRequest(principal=pb.Principal(id="probe", roles=["nobody"]))
    probe.resources.add(actions=["invoices:view"], resource=pb.Resource(kind="record", id="r"))
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        call = ch.unary_unary(METHOD, request_serializer=pb.CheckResourcesRequest.SerializeToString,
                              response_deserializer=pb.CheckResourcesResponse.FromString)
        while True:
            if proc.poll() is not None:
                raise RuntimeError("cerbos exited: " + (folder / "cerbos.log").read_text()[-2000:])
            try:
                call(probe, timeout=2)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
