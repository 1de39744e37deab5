"""One validation for every door, tried as an attacker would, against a real server.

The same hostile values (control characters, Unicode digits, numbers past int32/int64,
timestamps outside what google.protobuf.Timestamp allows, forged page tokens) are sent
through each door: gRPC AuthzService, Envoy ext_authz headers, AuthZEN over HTTP
(JSON), and `authz check --request FILE`. Each must be refused as a caller's mistake
naming the field (gRPC INVALID_ARGUMENT with a BadRequest violation, ext_authz and
HTTP 400, the CLI exit 2 naming file:line), never INTERNAL, UNKNOWN or a traceback.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from authz_server.xds import envoy_service_auth_v3_attribute_context_pb2 as attr
from authz_server.xds import envoy_service_auth_v3_external_auth_pb2 as ext
from authz_server.xds import envoy_service_auth_v3_external_auth_pb2_grpc as ext_grpc
from tests.e2e.serverproc import ServerProc, free_port, run_authz, seed, start_server

UNICODE_DIGITS = ("١٢٣", "１２", "²")  # Arabic-Indic, full-width, superscript
TOO_BIG = ("99999999999", "9223372036854775808", "1" * 30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    work: Path = tmp_path_factory.mktemp("doors")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    proc = start_server(work, url, "--http-listen", f"127.0.0.1:{free_port()}")
    yield proc
    assert '"internal_error"' not in proc.log(), proc.log()[-4000:]
    assert proc.stop() == 0, proc.log()[-4000:]


@pytest.fixture(scope="module")
def stub(server: ServerProc) -> Iterator[pb_grpc.AuthzServiceStub]:
    with grpc.insecure_channel(server.address) as ch:
        yield pb_grpc.AuthzServiceStub(ch)


def refused_field(call: object, request: object) -> str:
    """The field an INVALID_ARGUMENT names (fails on any other outcome)."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)  # type: ignore[operator]
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError(f"no BadRequest detail: {err.details()}")


# --- gRPC -----------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["9" * 25, "9223372036854775808", *UNICODE_DIGITS, "-5",
                                   " 7", "+3", "1e3", "0x10"])
def test_forged_page_tokens_are_refused(stub: pb_grpc.AuthzServiceStub, token: str) -> None:
    req = pb.QueryAuditRequest(org_id="acme-eu", page_token=token)
    assert refused_field(stub.QueryAudit, req) == "page_token"


@pytest.mark.parametrize("ts", [Timestamp(seconds=2**62), Timestamp(seconds=-(2**62)),
                                Timestamp(seconds=253402300800),  # 10000-01-01
                                Timestamp(seconds=-62135596801),  # year 0
                                Timestamp(seconds=1, nanos=-1),
                                Timestamp(seconds=1, nanos=1_000_000_000)])
@pytest.mark.parametrize("field", ["since", "until"])
def test_timestamps_out_of_range_are_refused(stub: pb_grpc.AuthzServiceStub, ts: Timestamp,
                                             field: str) -> None:
    req = pb.QueryAuditRequest(org_id="acme-eu")
    getattr(req, field).CopyFrom(ts)
    assert refused_field(stub.QueryAudit, req) == field


def test_negative_numbers_are_refused_naming_the_field(stub: pb_grpc.AuthzServiceStub) -> None:
    assert refused_field(stub.QueryAudit, pb.QueryAuditRequest(org_id="acme-eu", page_size=-1)) \
        == "page_size"
    check = pb.CheckRequest(org_id="acme-eu", user="u-sam", action="approve", module="invoices",
                            record=pb.Record(approval_level=-(2**31)))
    assert refused_field(stub.Check, check) == "record.approval_level"
    batch = pb.CheckBatchRequest(requests=[check])
    assert refused_field(stub.CheckBatch, batch) == "requests[0].record.approval_level"
    lf = pb.ListFilterRequest(org_id="acme-eu", user="u-sam", module="invoices", action="view",
                              min_revision=-(2**63))
    assert refused_field(stub.ListFilter, lf) == "min_revision"


# --- Envoy ext_authz --------------------------------------------------------------------

def ext_check(server: ServerProc, headers: dict[str, str], method: str = "GET") -> ext.CheckResponse:
    req = ext.CheckRequest(attributes=attr.AttributeContext(request=attr.AttributeContext.Request(
        http=attr.AttributeContext.HttpRequest(method=method, headers=headers))))
    with grpc.insecure_channel(server.address) as ch:
        out: ext.CheckResponse = ext_grpc.AuthorizationStub(ch).Check(req, timeout=10)
        return out


BASE = {"x-authz-org": "acme-eu", "x-authz-user": "u-sam", "x-authz-module": "invoices"}


@pytest.mark.parametrize("header,value", [
    *[("x-authz-approval-level", v) for v in (*UNICODE_DIGITS, *TOO_BIG, "-1", "1.5")],
    *[("x-authz-total", v) for v in (*UNICODE_DIGITS, "1e999", "inf", "nan", "0x10")],
    ("x-authz-user", "u-sam\x00"), ("x-authz-owner", "a\nb"), ("x-authz-status", "\x1b[31m"),
    ("x-authz-org", "a" * 2000), ("x-authz-read-fields", "discount,\x7f"),
])
def test_ext_authz_headers_are_held_to_the_same_rules(server: ServerProc, header: str,
                                                      value: str) -> None:
    out = ext_check(server, BASE | {header: value})
    assert out.status.code == code_pb2.INVALID_ARGUMENT, out
    assert out.denied_response.status.code == 400
    assert header in out.status.message


def test_ext_authz_unicode_digits_are_not_read_as_numbers(server: ServerProc) -> None:
    """'١٢٣' is 123 to Python's int() and float(); it is not a number any door takes."""
    ok = ext_check(server, BASE | {"x-authz-total": "123", "x-authz-approval-level": "1"})
    assert ok.status.code == code_pb2.OK, ok
    bad = ext_check(server, BASE | {"x-authz-total": "١٢٣"})
    assert bad.status.code == code_pb2.INVALID_ARGUMENT


# --- AuthZEN over HTTP -------------------------------------------------------------------

def http_post(server: ServerProc, path: str, body: object) -> tuple[int, dict[str, Any]]:
    port = re.search(r'"authzen_listening".*?"port": (\d+)', server.log())
    assert port, server.log()[-2000:]
    req = urllib.request.Request(f"http://127.0.0.1:{port.group(1)}{path}",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def evaluation(props: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"subject": {"type": "user", "id": "u-sam", "properties": {"org_id": "acme-eu"}},
            "action": {"name": "view"},
            "resource": {"type": "invoices", "id": "r-1", "properties": props},
            "context": context or {}}


@pytest.mark.parametrize("props,context,named", [
    ({"total": 10**400}, None, "resource.properties.total"),
    ({"approval_level": "١"}, None, "resource.properties.approval_level"),
    ({"approval_level": 2**64}, None, "resource.properties.approval_level"),
    ({"owner": "a\u0000b"}, None, "resource.properties.owner"),
    ({}, {"min_revision": "²"}, "context.min_revision"),
    ({}, {"min_revision": 2**64}, "context.min_revision"),
])
def test_authzen_json_is_held_to_the_same_rules(server: ServerProc, props: dict[str, Any],
                                                context: dict[str, Any] | None,
                                                named: str) -> None:
    status, body = http_post(server, "/access/v1/evaluation", evaluation(props, context))
    assert status == 400, body
    assert named in json.dumps(body), body


@pytest.mark.parametrize("token", ["²", "١٢٣", "9" * 30, "-1"])
def test_authzen_search_page_tokens_are_refused(server: ServerProc, token: str) -> None:
    body = evaluation({}) | {"page": {"token": token}}
    del body["resource"]["id"]
    status, out = http_post(server, "/access/v1/search/resource", body)
    assert status == 400, out
    assert "page.token" in json.dumps(out), out


# --- request files ----------------------------------------------------------------------

QUESTION = "org_id: acme-eu\nuser: u-sam\naction: view\nmodule: invoices\n"


@pytest.mark.parametrize("line,named", [
    ("min_revision: abc", "min_revision"),
    ("min_revision: '١٢٣'", "min_revision"),
    ("min_revision: 99999999999999999999999", "min_revision"),
    ("min_revision: -1", "min_revision"),
    ("record: {approval_level: 1099511627776}", "record.approval_level"),
    ("record: {approval_level: '²'}", "record.approval_level"),
    ("record: {total: .inf}", "record.total"),
    ("record: {total: '１２'}", "record.total"),
    ("record: {owner: \"a\\0b\"}", "record.owner"),
    ("read_fields: [\"x\\ny\"]", "read_fields"),
    ("product: " + "p" * 2000, "product"),
    ("explain: maybe", "explain"),
])
def test_request_files_are_held_to_the_same_rules(server: ServerProc, tmp_path: Path,
                                                  line: str, named: str) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(QUESTION + line + "\n")
    done = run_authz("check", "--server", server.address, "--request", str(path), check=False)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{path}:5: " in done.stderr and named in done.stderr, done.stderr


def test_request_file_json_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text('{"org_id": "acme-eu", "user": "u-sam", "action": "view",\n'
                    ' "module": "invoices",\n "min_revision": 1e400}\n')
    done = run_authz("check", "--request", str(path), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{path}:3: min_revision" in done.stderr, done.stderr
