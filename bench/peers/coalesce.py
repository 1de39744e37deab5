"""The coalescing client SDK (`authz_client.AsyncAuthzClient`, h8's issue-13 client side):
32 concurrent callers through one client, whose concurrent checks leave as CheckBatch.

The bench only adapts it: the same questions as the single-call runs, as CheckQuery
values built once. `client_factory()` returns None when the SDK is not installed (then
the table says the coalesced figure was not measured).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from authz.v1 import authz_pb2 as pb


def client_factory() -> Callable[[str], Any] | None:
    """A function address -> coalescing async client (coalescing on, its defaults)."""
    try:
        sdk = importlib.import_module("authz_client")
    except ImportError:
        return None
    make = getattr(sdk, "AsyncAuthzClient", None)
    if make is None:
        return None
    return lambda address: make(address, coalesce=True)


def asker(payloads: list[bytes]) -> Callable[[Any, int], Awaitable[Any]]:
    """The i-th question through the client (queries built once, up front)."""
    types = importlib.import_module("authz_client.types")
    queries = []
    for p in payloads:
        m = pb.CheckRequest.FromString(p)
        r = m.record
        queries.append(types.CheckQuery(
            m.org_id, m.user, m.action, m.module, product=m.product,
            record=types.Record(record_id=r.record_id, owner=r.owner,
                                total=r.total.value if r.HasField("total") else None,
                                status=r.status, approval_level=r.approval_level,
                                created_by=r.created_by, location=r.location),
            write_fields=tuple(m.write_fields),
            channel="direct" if m.channel == pb.CHANNEL_DIRECT else "crm"))

    def ask(client: Any, i: int) -> Awaitable[Any]:
        return client.check_query(queries[i % len(queries)])  # type: ignore[no-any-return]

    return ask
