"""The coalescing client SDK, when installed: concurrent checks in one CheckBatch.

The SDK is another engineer's work (issue 13's client side); this module only finds it
and adapts it to the bench's callers. Until it exists `client_factory()` returns None
and the bench says the coalesced figure was not measured.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from authz.v1 import authz_pb2 as pb


def client_factory() -> Callable[[str], Any] | None:
    """A function address -> coalescing async client, or None when none is installed."""
    try:
        mod = importlib.import_module("authz_client.coalesce")
    except ImportError:
        return None
    make = getattr(mod, "CoalescingClient", None)
    return None if make is None else (lambda address: make(address))


def asker(payloads: list[bytes]) -> Callable[[Any, int], Awaitable[Any]]:
    """The i-th question through the client (requests parsed once, up front)."""
    msgs = [pb.CheckRequest.FromString(p) for p in payloads]

    def ask(client: Any, i: int) -> Awaitable[Any]:
        return client.check(msgs[i % len(msgs)])  # type: ignore[no-any-return]

    return ask
