"""Server processes for bench/server.py: the echo floors and the thread-pool prototype.

`python -m bench.servers echo-aio PORT` / `echo-sync PORT`: a trivial unary method with
the real server's transport (grpc.aio, or grpc.server with a thread pool) and options,
taking a CheckRequest and returning a CheckResponse of a real decision's size, so the
floor pays the same (de)serialization as Check but no domain work.

`python -m bench.servers sync-check PORT DB POLICY_DIR`: the serving-model alternative
measured against grpc.aio: Check and CheckBatch on a synchronous grpc.server with a
16-thread pool, over the same Engine, store and batched audit writer as `authz serve`
(without the aio-only gate interceptor, which favours this prototype, not ours).
Each prints "ready" once it listens.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from authz.v1 import authz_pb2 as pb

OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]  # Config default
ECHO_METHOD = "/bench.Echo/Check"


def sample_response() -> pb.CheckResponse:
    """A CheckResponse shaped like a granted decision with field masks and an approval."""
    out = pb.CheckResponse(
        decision=pb.DECISION_ALLOW, reason=pb.REASON_GRANTED,
        message="role Staff (books) grants create on books invoices; the record will wait "
                "for approval at level 1",
        mode=pb.MODE_UNIFIED,
        identity=pb.Identity(kind=pb.IDENTITY_KIND_FINANCE_USER, crm_user_id="u042",
                             email="u042@org-00001.example", display_name="User 42",
                             books_user_id="b-u042", roles=["books:role_07"]),
        hidden_fields=["notes"], read_only_fields=["discount", "tax_id"],
        policy_revision="3f2a9c1e5b7d", directory_revision=1,
        decision_id="9f1c2e3d4b5a69788796a5b4c3d2e1f0", product="books", org_id="org-00001")
    out.decided_at.GetCurrentTime()
    out.approval.CopyFrom(pb.ApprovalObligation(
        outcome=pb.APPROVAL_OUTCOME_PENDING_APPROVAL, rule="large", level=1, levels=2,
        approver_roles=["books:role_03"]))
    return out


def _echo_handlers() -> grpc.GenericRpcHandler:
    response = sample_response()

    def echo(req: pb.CheckRequest, ctx: Any) -> pb.CheckResponse:
        return response

    async def echo_aio(req: pb.CheckRequest, ctx: Any) -> pb.CheckResponse:
        return response

    is_aio = sys.argv[1] == "echo-aio"
    handler = grpc.unary_unary_rpc_method_handler(
        echo_aio if is_aio else echo, request_deserializer=pb.CheckRequest.FromString,
        response_serializer=pb.CheckResponse.SerializeToString)
    return grpc.method_handlers_generic_handler("bench.Echo", {"Check": handler})


async def _serve_aio(port: str) -> None:
    server = grpc.aio.server(futures.ThreadPoolExecutor(16), options=OPTIONS)
    server.add_generic_rpc_handlers((_echo_handlers(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def _serve_sync(port: str, servicer: Any = None) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(16), options=OPTIONS)
    if servicer is None:
        server.add_generic_rpc_handlers((_echo_handlers(),))
    else:
        from authz.v1 import authz_pb2_grpc

        authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def _sync_servicer(db: str, policy_dir: str) -> Any:
    """Check/CheckBatch over the real engine, store and audit writer, in pool threads."""
    from authz.decision import CheckRequest
    from authz.engine.engine import Engine, PolicySet
    from authz.errors import AuthzError
    from authz.v1 import authz_pb2_grpc
    from authz_server.api import convert
    from authz_server.api.audited import open_audit
    from authz_server.process.app import open_store
    from authz_server.process.config import Config

    store = open_store(db)
    policies = PolicySet(Path(policy_dir))
    policies.warm()
    engine = Engine(policies, store)
    audit = open_audit(Config(), store)

    class Servicer(authz_pb2_grpc.AuthzServiceServicer):  # type: ignore[misc]
        def Check(self, request: pb.CheckRequest, context: Any) -> pb.CheckResponse:
            req = convert.check_request(request)
            d, _ = audit.check(engine, req, "bench")
            return convert.check_response(d)

        def CheckBatch(self, request: pb.CheckBatchRequest, context: Any
                       ) -> pb.CheckBatchResponse:
            reqs = [convert.check_request(m) for m in request.requests]
            out = pb.CheckBatchResponse()
            for d in audit.check_many(engine, reqs, "bench")[0]:
                if isinstance(d, AuthzError | CheckRequest):
                    out.results.add(error=convert.error_status(d))  # type: ignore[arg-type]
                else:
                    out.results.add(response=convert.check_response(d))
            return out

    return Servicer()


def main() -> None:
    kind, port = sys.argv[1], sys.argv[2]
    if kind == "echo-aio":
        asyncio.run(_serve_aio(port))
    elif kind == "echo-sync":
        _serve_sync(port)
    elif kind == "sync-check":
        _serve_sync(port, _sync_servicer(sys.argv[3], sys.argv[4]))
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
