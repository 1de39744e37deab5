"""Reflection v1 and v1alpha, and error details other languages' tools can read, checked
with the third-party clients themselves: `buf curl` (Go, connect-go) and grpcurl."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tests.e2e.serverproc import BIN, REPO, ServerProc

BUF = str(BIN / "buf")
QUESTION = {"org_id": "acme-eu", "user": "u-sam", "action": "view", "module": "invoices"}


def buf_curl(server: ServerProc, method: str, body: dict[str, str], *flags: str
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge", *flags,
                           "-d", json.dumps(body), f"http://{server.address}/{method}"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_buf_curl_calls_check_through_each_reflection_protocol(server: ServerProc,
                                                               protocol: str) -> None:
    done = buf_curl(server, "authz.v1.AuthzService/Check", QUESTION,
                    "--reflect-protocol", protocol)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["decision"] == "DECISION_ALLOW"


def test_reflection_v1_lists_and_describes_itself(server: ServerProc) -> None:
    done = subprocess.run([BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge",
                           "--reflect-protocol", "grpc-v1", "--list-methods",
                           f"http://{server.address}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    methods = done.stdout.split()
    assert "grpc.reflection.v1.ServerReflection/ServerReflectionInfo" in methods
    assert "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" in methods
    assert "authz.v1.AuthzService/Check" in methods
    grpcurl = str(BIN / "grpcurl")
    done = subprocess.run([grpcurl, "-plaintext", server.address, "describe",
                           "grpc.reflection.v1.ServerReflection"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and ".grpc.reflection.v1.ServerReflectionRequest" in done.stdout


def test_error_details_decode_with_the_shipped_schema(server: ServerProc) -> None:
    """buf curl names the detail's type and gives its bytes (buf prints details it was not
    compiled with as base64); `buf convert` with the repository's schema, which ships
    google/rpc/error_details.proto in third_party/, decodes them to the field names."""
    done = buf_curl(server, "authz.v1.AuthzService/Check", {**QUESTION, "module": "bananas"},
                    "--reflect-protocol", "grpc-v1")
    assert done.returncode != 0
    error = json.loads(done.stderr)
    assert error["code"] == "invalid_argument"
    [detail] = error["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    decoded = subprocess.run([BUF, "convert", ".", "--type", detail["type"],
                              "--from", "-#format=binpb", "--to", "-#format=json"],
                             input=base64.b64decode(detail["value"]), capture_output=True,
                             timeout=60, cwd=REPO)
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout) == {"fieldViolations": [
        {"field": "module", "description": "unknown module 'bananas'"}]}


def test_reflection_describes_the_error_detail_types(server: ServerProc) -> None:
    """A tool that decodes details by reflection (grpcurl) finds their schema on the server."""
    grpcurl = str(BIN / "grpcurl")
    for name, field in (("google.rpc.BadRequest", "field_violations"),
                        ("google.rpc.ErrorInfo", "reason")):
        done = subprocess.run([grpcurl, "-plaintext", server.address, "describe", name],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and field in done.stdout, done.stderr
