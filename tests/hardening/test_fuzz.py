"""Property-based fuzzing of every door against a real server process: each AuthzService
RPC, Envoy ext_authz (headers), AuthZEN over HTTP (JSON), and `authz check --request`
files (the same campaign:
hostile text, Unicode digits, numbers past int32/int64, under the same credentials).

Requests are generated from the proto descriptors (so an RPC added later is fuzzed
without touching this file), mixing realistic values (known organizations, users,
modules, actions) with hostile ones (control characters, 1000+ character strings,
unknown enum numbers, NaN and infinities, negative revisions), under four credentials
(none, a wrong token, a narrow token, an all-scopes token); plus raw bytes that are not
a valid message at all. Only well-formed refusals may come back, never INTERNAL or
UNKNOWN, and the server must still be alive and SERVING afterwards.

Examples per RPC: FUZZ_EXAMPLES (default 25 in `make test`; `make fuzz` runs thousands).
Each run prints calls per door and the codes returned ("fuzz <door> <rpc>: N calls {...}").
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz import catalog
from authz.v1 import authz_pb2 as pb
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server
from tests.hardening.conftest import write_callers

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SERVICE = pb.DESCRIPTOR.services_by_name["AuthzService"]
METHODS = [m for m in SERVICE.methods if not m.client_streaming]
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
_STATS: dict[str, dict[str, int]] = {}

ORGS = ["acme-eu", "globex-us", "nope", "", "../etc", "ACME-EU"]
VOCAB: dict[str, list[Any]] = {
    "org_id": ORGS,
    "user": ["u-sam", "sam@acme.example", "SAM@ACME.EXAMPLE", "u-anna", "u-ghost", ""],
    "caller": ["u-anna", "u-sam", ""],
    "action": ["view", "create", "edit", "delete", "approve", "email", "export", "frobnicate"],
    "module": [*sorted(catalog.ALL_MODULES), "bananas", ""],
    "product": ["books", "subscriptions", "", "crm"],
    "status": [*sorted(catalog.RECORD_STATES), "weird"],
    "email": ["a@acme.example", "sam@acme.example", "no-at-sign", ""],
    "read_fields": ["discount", "total", "internal_notes", "payment_terms", "bad name"],
    "write_fields": ["discount", "total", "notes"],
    "customer_id": ["c-1", ""], "owner": ["u-sam", "u-anna"], "created_by": ["u-sam", "u-anna"],
    "currency": ["EUR", "USD"], "location": ["berlin", ""], "record_id": ["r-1", ""],
    "crm_user_ids": ["u-sam", "u-ghost", "u-lena"], "role_id": ["staff", "admin", "sales_rep"],
    "id": ["u-sam", "u-new"], "name": ["Sam", ""], "job_id": ["j-1", ""],
    "decision_id": ["0" * 32, ""], "user_id": ["b-1", "b-2"], "crm_user_id": ["u-sam", "u-new"],
}
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from("\x00\n\r\x1b\x7f\u202e\ufeffé"), min_size=1, max_size=8),
    st.just("x" * 1100),
    st.just("a" * 300),
)
# Numbers as text, as headers and files carry them: Unicode digits (int("١٢٣") is 123 in
# Python), past int32 and int64, signs, exponents, hex, NaN and infinities.
NUMERIC_TEXT = st.one_of(
    st.sampled_from(["0", "1", "3", "10", "20000", "-1", "+3", " 7", "1.5", "1e3", "1e999",
                     "-1e999", "nan", "inf", "0x10", "١٢٣", "１２", "²", "99999999999",
                     "9223372036854775808", "1" * 40, ""]),
    st.integers(-(2**70), 2**70).map(str),
)


def _string(fd: FieldDescriptor) -> st.SearchStrategy[str]:
    known = VOCAB.get(fd.name)
    if not known:
        return HOSTILE
    realistic = st.sampled_from(known)
    return st.one_of(realistic, realistic, realistic, HOSTILE)  # mostly deep paths, some junk


def _scalar(fd: Any) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return _string(fd)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if t == 1 else 32)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)  # proto3 enums are open: unknown numbers arrive as is
    if fd.name in ("min_revision",):  # large values wait for a revision: keep them rare
        return st.sampled_from([0, 0, 0, 1, -1, -(2**63), 0, 2, 0, 0, 0, 0, 0, 0, 0, 10**12])
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.one_of(st.integers(-3, 20), st.sampled_from([-(2**63), 2**63 - 1]))
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.one_of(st.integers(0, 20), st.just(2**64 - 1))
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.integers(0, 20), st.just(2**32 - 1))
    return st.one_of(st.integers(-3, 20), st.sampled_from([-(2**31), 2**31 - 1]))


@st.composite
def messages(draw: st.DrawFn, desc: Descriptor, depth: int = 0) -> Message:
    cls = message_factory.GetMessageClass(desc)
    msg = cls()
    for fd in desc.fields:
        if draw(st.integers(0, 9)) >= (8 if fd.name in VOCAB else 5):
            continue
        if fd.message_type is not None:
            if depth >= 3 or fd.message_type.GetOptions().map_entry:
                continue
            sub = messages(fd.message_type, depth + 1)
            if fd.is_repeated:
                getattr(msg, fd.name).extend(draw(st.lists(sub, max_size=4)))
            else:
                getattr(msg, fd.name).CopyFrom(draw(sub))
        elif fd.is_repeated:
            getattr(msg, fd.name).extend(draw(st.lists(_scalar(fd), max_size=5)))
        else:
            setattr(msg, fd.name, draw(_scalar(fd)))
    return msg


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, dict[str, str]]]:
    work = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{work / 'authz.db'}"
    seed(url)
    tokens = {"batch-job": secrets.token_urlsafe(16), "admin": secrets.token_urlsafe(16)}
    write_callers(work / "callers.yaml", tokens)
    http_port = free_port()
    proc = start_server(work, url, "--callers", str(work / "callers.yaml"),  # tokens on loopback
                        "--http-listen", f"127.0.0.1:{http_port}")
    tokens["http"] = f"http://127.0.0.1:{http_port}"
    yield proc, tokens
    assert proc.proc.poll() is None, "server died during fuzzing:\n" + proc.log()[-4000:]
    for _ in range(50):  # the store probe may lag behind a burst of writes
        if proc.health() == 1:
            break
        time.sleep(0.2)
    assert proc.health() == 1, proc.log()[-4000:]
    assert '"internal_error"' not in proc.log(), proc.log()[-4000:]
    for name, codes in sorted(_STATS.items()):
        print(f"fuzz {name}: {sum(codes.values())} calls {codes}")
    assert proc.stop() == 0


def _call(server: ServerProc, method: Any, payload: bytes, token: str | None) -> tuple[grpc.StatusCode, str]:
    path = f"/{SERVICE.full_name}/{method.name}"
    md = (("authorization", f"Bearer {token}"),) if token else ()
    ident = lambda b: b  # noqa: E731 (send and receive raw bytes)
    with grpc.insecure_channel(server.address) as ch:
        try:
            if method.server_streaming:
                for _ in ch.unary_stream(path, request_serializer=ident, response_deserializer=ident)(
                        payload, timeout=3, metadata=md):
                    break  # one message is enough: a watch may stream for long
            else:
                # Generous: a loaded CI machine must not turn slowness into a failure here.
                ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(
                    payload, timeout=20, metadata=md)
        except grpc.RpcError as err:
            return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def _assert_allowed(method: Any, code: grpc.StatusCode, details: str) -> None:
    stats = _STATS.setdefault(f"grpc {method.name}", {})
    stats[code.name] = stats.get(code.name, 0) + 1
    if code == grpc.StatusCode.UNIMPLEMENTED and "not implemented" in details.lower():
        return  # an RPC another issue has not delivered yet
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
        return  # a watch with nothing to report keeps the stream open
    assert code in ALLOWED, f"{method.name}: {code.name}: {details}"


CREDS = st.sampled_from(["none", "wrong", "batch-job", "admin", "admin"])


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_fuzz_rpc(fuzz_server: tuple[ServerProc, dict[str, str]], method: Any) -> None:
    server, tokens = fuzz_server

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(msg=messages(method.input_type), cred=CREDS)
    def run(msg: Message, cred: str) -> None:
        token = {"none": None, "wrong": "wrong-token"}.get(cred, tokens.get(cred))
        code, details = _call(server, method, msg.SerializeToString(), token)
        _assert_allowed(method, code, details)

    run()


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_fuzz_raw_bytes(fuzz_server: tuple[ServerProc, dict[str, str]], method: Any) -> None:
    server, tokens = fuzz_server

    @settings(max_examples=max(EXAMPLES // 2, 5), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(payload=st.binary(min_size=1, max_size=200))
    def run(payload: bytes) -> None:
        code, details = _call(server, method, payload, tokens["admin"])
        _assert_allowed(method, code, details)

    run()


PAIRS = [(a, m) for m in ("invoices", "estimates", "sales_orders", "subscriptions", "reports")
         for a in catalog.actions_for(m)]


@st.composite
def valid_checks(draw: st.DrawFn) -> pb.CheckRequest:
    """Checks that pass validation, so the decision rules themselves get fuzzed."""
    action, module = draw(st.sampled_from(PAIRS))
    rec = pb.Record(status=draw(st.sampled_from(["", *sorted(catalog.RECORD_STATES)])),
                    owner=draw(st.sampled_from(VOCAB["owner"])),
                    created_by=draw(st.sampled_from(VOCAB["created_by"])),
                    approval_level=draw(st.integers(0, 10)),
                    location=draw(st.sampled_from(VOCAB["location"])))
    if draw(st.booleans()):
        rec.total.value = draw(st.floats(-1e12, 1e12))
    return pb.CheckRequest(
        org_id=draw(st.sampled_from(["acme-eu", "globex-us"])), user=draw(st.sampled_from(VOCAB["user"][:5])),
        action=action, module=module, product=draw(st.sampled_from(["", "books", "subscriptions"])),
        record=rec, read_fields=draw(st.lists(st.sampled_from(VOCAB["read_fields"][:4]), max_size=3)),
        write_fields=draw(st.lists(st.sampled_from(VOCAB["write_fields"]), max_size=2)),
        channel=draw(st.sampled_from([0, 1, 2])), explain=draw(st.booleans()))


def test_fuzz_valid_checks(fuzz_server: tuple[ServerProc, dict[str, str]]) -> None:
    server, tokens = fuzz_server
    method = SERVICE.methods_by_name["Check"]

    @settings(max_examples=EXAMPLES * 2, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(msg=valid_checks())
    def run(msg: pb.CheckRequest) -> None:
        code, details = _call(server, method, msg.SerializeToString(), tokens["admin"])
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), f"{code}: {details}"
        _STATS.setdefault("grpc Check (valid)", {}).setdefault(code.name, 0)
        _STATS["grpc Check (valid)"][code.name] += 1

    run()


# --- Envoy ext_authz: the same campaign through headers --------------------------------

EXT_METHOD = "/envoy.service.auth.v3.Authorization/Check"
EXT_TEXT_HEADERS = {"org": "org_id", "user": "user", "module": "module", "action": "action",
                    "product": "product", "record-id": "record_id",
                    "customer-id": "customer_id", "owner": "owner", "currency": "currency",
                    "status": "status", "created-by": "created_by", "location": "location",
                    "read-fields": "read_fields", "write-fields": "write_fields"}

EXT_VOCAB = {"org": ["acme-eu", "acme-eu", "globex-us", "nope"],
             "module": ["invoices", "estimates", "sales_orders"],
             "action": ["view", "create", "edit", "approve", "email"],
             "product": ["books", "subscriptions"], "read-fields": ["discount", "total"],
             "write-fields": ["discount", "discount,total"], "status": ["draft", "approved"]}


@st.composite
def ext_requests(draw: st.DrawFn) -> Message:
    from authz_server.xds import envoy_service_auth_v3_attribute_context_pb2 as attr
    from authz_server.xds import envoy_service_auth_v3_external_auth_pb2 as ext

    headers: dict[str, str] = {}
    hostile = draw(st.integers(0, 3)) == 0  # a quarter hostile; the rest reach decisions
    for name, field in EXT_TEXT_HEADERS.items():
        required = name in ("org", "user", "module")
        if required or draw(st.integers(0, 9)) < 3:
            known = EXT_VOCAB.get(name) or [v for v in VOCAB.get(field, []) if v] or ["x"]
            value = draw(HOSTILE if hostile and draw(st.booleans()) else st.sampled_from(known))
            headers["x-authz-" + name] = value
    for name, real in (("total", ["0", "20000", "1.5"]), ("approval-level", ["0", "1", "2"])):
        if draw(st.integers(0, 3)) == 0:
            headers["x-authz-" + name] = draw(NUMERIC_TEXT if hostile else st.sampled_from(real))
    if draw(st.booleans()):
        headers["x-authz-channel"] = draw(st.sampled_from(["crm", "direct", "CRM", "", "x"]))
    if draw(st.integers(0, 9)) == 0:
        headers[draw(HOSTILE).lower() or "x"] = draw(HOSTILE)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "BREW", ""]))
    return ext.CheckRequest(attributes=attr.AttributeContext(
        request=attr.AttributeContext.Request(
            http=attr.AttributeContext.HttpRequest(method=method, headers=headers))))


def _ext_call(server: ServerProc, payload: bytes, token: str | None) -> tuple[str, str]:
    """The ext_authz answer's code ("grpc:<code>" when the call itself failed)."""
    from google.rpc import code_pb2

    from authz_server.xds import envoy_service_auth_v3_external_auth_pb2 as ext

    md = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(server.address) as ch:
        try:
            raw = ch.unary_unary(EXT_METHOD, request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)(payload, timeout=20,
                                                                    metadata=md)
        except grpc.RpcError as err:
            return f"grpc:{err.code().name}", err.details() or ""
    out = ext.CheckResponse.FromString(raw)
    return code_pb2.Code.Name(out.status.code), out.status.message


EXT_ALLOWED = {"OK", "PERMISSION_DENIED", "INVALID_ARGUMENT", "UNAVAILABLE",
               "grpc:UNAUTHENTICATED", "grpc:PERMISSION_DENIED", "grpc:INVALID_ARGUMENT",
               "grpc:RESOURCE_EXHAUSTED"}


def _ext_assert(kind: str, code: str, details: str) -> None:
    stats = _STATS.setdefault(f"ext_authz {kind}", {})
    stats[code] = stats.get(code, 0) + 1
    assert code in EXT_ALLOWED, f"ext_authz: {code}: {details}"
    if code == "UNAVAILABLE":
        assert "starting" in details or "audit" in details, details


def test_fuzz_ext_authz(fuzz_server: tuple[ServerProc, dict[str, str]]) -> None:
    server, tokens = fuzz_server

    @settings(max_examples=EXAMPLES * 4, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(msg=ext_requests(), cred=CREDS)
    def run(msg: Message, cred: str) -> None:
        token = {"none": None, "wrong": "wrong-token"}.get(cred, tokens.get(cred))
        _ext_assert("Check", *_ext_call(server, msg.SerializeToString(), token))

    run()


def test_fuzz_ext_authz_raw_bytes(fuzz_server: tuple[ServerProc, dict[str, str]]) -> None:
    server, tokens = fuzz_server

    @settings(max_examples=max(EXAMPLES // 2, 5), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(payload=st.binary(min_size=1, max_size=200))
    def run(payload: bytes) -> None:
        _ext_assert("raw bytes", *_ext_call(server, payload, tokens["admin"]))

    run()


# --- request files: the same campaign through `authz check --request FILE` -------------

FILE_KEYS = ["org_id", "org", "user", "action", "module", "product", "read_fields",
             "write_fields", "channel", "explain", "min_revision", "record", "bogus"]
RECORD_KEYS = ["record_id", "customer_id", "owner", "total", "currency", "status",
               "approval_level", "created_by", "location", "colour"]
FILE_VALUES = st.one_of(
    HOSTILE, NUMERIC_TEXT, st.integers(-(2**70), 2**70), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.lists(HOSTILE, max_size=3),
    st.sampled_from(["acme-eu", "u-sam", "view", "invoices", "crm", "direct"]),
)


@st.composite
def request_files(draw: st.DrawFn) -> tuple[str, str]:
    """(suffix, text) of a request file: mostly a real question with hostile values."""
    import json

    import yaml

    data: dict[str, Any] = {"org_id": "acme-eu", "user": draw(st.sampled_from(VOCAB["user"])),
                            "action": draw(st.sampled_from(VOCAB["action"])),
                            "module": "invoices"}
    for key in draw(st.lists(st.sampled_from(FILE_KEYS), max_size=4)):
        if key == "record":
            data["record"] = {k: draw(FILE_VALUES) for k in
                              draw(st.lists(st.sampled_from(RECORD_KEYS), max_size=4))}
        else:
            data[key] = draw(FILE_VALUES)
    if draw(st.booleans()):
        return ".json", json.dumps(data, allow_nan=True)
    return ".yaml", yaml.safe_dump(data, allow_unicode=True)


def test_fuzz_request_files(fuzz_server: tuple[ServerProc, dict[str, str]],
                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """What `authz check --request` does, in process: read and validate the file (a
    refusal names file and line), then send what passed to the server."""
    from authz_server.cli import build_parser
    from authz_server.cli.requestfile import RequestFileError, merge, question

    server, tokens = fuzz_server
    work = tmp_path_factory.mktemp("requests")
    parser = build_parser()
    method = SERVICE.methods_by_name["Check"]

    @settings(max_examples=EXAMPLES * 4, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(doc=request_files())
    def run(doc: tuple[str, str]) -> None:
        path = work / f"q{doc[0]}"
        path.write_text(doc[1])
        args = parser.parse_args(["check", "--request", str(path)])
        stats = _STATS.setdefault("request_file Check", {})
        try:
            req = question(merge(args, args.check_parser.parse_args([])))
        except RequestFileError as exc:
            stats["refused (file:line)"] = stats.get("refused (file:line)", 0) + 1
            assert str(exc).startswith(str(path)) or str(exc).startswith("--") \
                or str(exc).startswith("missing"), exc
            return
        code, details = _call(server, method, req.SerializeToString(), tokens["admin"])
        stats[code.name] = stats.get(code.name, 0) + 1
        assert code in ALLOWED, f"{code.name}: {details}"

    run()


# --- AuthZEN over HTTP: the same campaign through JSON -----------------------------------

HTTP_PATHS = ["/access/v1/evaluation", "/access/v1/evaluations", "/access/v1/search/resource"]
JSON_VALUES = st.one_of(
    HOSTILE, NUMERIC_TEXT, st.integers(-(2**70), 2**70), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False), st.lists(HOSTILE, max_size=3),
    st.dictionaries(HOSTILE, HOSTILE, max_size=2),
)


@st.composite
def authzen_bodies(draw: st.DrawFn, path: str = HTTP_PATHS[0]) -> dict[str, Any]:
    """An AuthZEN request for `path`: mostly a real question, some values hostile."""
    hostile = draw(st.integers(0, 2)) == 0  # a third hostile; the rest reach decisions

    def maybe(real: Any) -> Any:
        return draw(JSON_VALUES) if hostile and draw(st.integers(0, 3)) == 0 else real

    body: dict[str, Any] = {
        "subject": {"type": maybe("user"), "id": maybe(draw(st.sampled_from(VOCAB["user"]))),
                    "properties": {"org_id": maybe(draw(st.sampled_from(EXT_VOCAB["org"])))}},
        "action": {"name": maybe(draw(st.sampled_from(VOCAB["action"])))},
        "resource": {"type": maybe(draw(st.sampled_from(["invoices", "estimates", "bananas"]))),
                     "id": maybe("r-1"),
                     "properties": {k: maybe(v) for k, v in draw(st.lists(st.sampled_from([
                         ("total", 100), ("approval_level", 1), ("status", "draft"),
                         ("owner", "u-sam"), ("product", "books")]), max_size=3))}},
    }
    if draw(st.booleans()):
        revisions = [0, 1, -1, "1", "١", "²", 2**64] if hostile else [0, 0, 1, "1"]
        body["context"] = {"channel": maybe("crm"),
                           "min_revision": draw(st.sampled_from(revisions))}
    wanted = path.endswith("evaluations") and draw(st.integers(0, 3)) > 0
    if wanted or (hostile and draw(st.integers(0, 5)) == 0):
        body["evaluations"] = [{"action": {"name": maybe("view")}} for _ in range(draw(
            st.integers(0, 3)))]
    if path.endswith("search/resource"):
        body["resource"].pop("id")
        if draw(st.booleans()):
            body["page"] = {"token": draw(NUMERIC_TEXT if hostile else st.just("0")),
                            "limit": maybe(10)}
    if hostile and draw(st.integers(0, 5)) == 0:
        body[draw(HOSTILE)] = draw(JSON_VALUES)
    return body


HTTP_ALLOWED = {200, 400, 401, 403, 404, 413}


def _http_call(base: str, path: str, body: bytes, token: str | None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")[:300]


def _http_assert(path: str, status: int, details: str) -> None:
    stats = _STATS.setdefault(f"http {path.rsplit('/', 1)[-1]}", {})
    stats[str(status)] = stats.get(str(status), 0) + 1
    assert status in HTTP_ALLOWED, f"{path}: HTTP {status}: {details}"


def test_fuzz_authzen_http(fuzz_server: tuple[ServerProc, dict[str, str]]) -> None:
    import json

    _server, tokens = fuzz_server

    @settings(max_examples=EXAMPLES * 4, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(question=st.sampled_from(HTTP_PATHS).flatmap(
        lambda p: st.tuples(st.just(p), authzen_bodies(p))), cred=CREDS)
    def run(question: tuple[str, dict[str, Any]], cred: str) -> None:
        path, body = question
        token = {"none": None, "wrong": "wrong-token"}.get(cred, tokens.get(cred))
        payload = json.dumps(body).encode()
        _http_assert(path, *_http_call(tokens["http"], path, payload, token))

    run()


def test_fuzz_authzen_http_raw_bytes(fuzz_server: tuple[ServerProc, dict[str, str]]) -> None:
    _server, tokens = fuzz_server

    @settings(max_examples=max(EXAMPLES // 2, 5), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(payload=st.binary(min_size=0, max_size=200), path=st.sampled_from(HTTP_PATHS))
    def run(payload: bytes, path: str) -> None:
        _http_assert(path, *_http_call(tokens["http"], path, payload, tokens["admin"]))

    run()
