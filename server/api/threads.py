"""Running blocking domain calls (the store is synchronous) off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in a worker thread with the call's context variables (its caller, and its
    wait budget: a store wait there ends by the call's deadline or when it is cancelled)."""
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(executor, ctx.run, fn, *args)
