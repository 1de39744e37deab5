"""Process lifecycle: one server per port, workers that die with their parent, and a
shutdown that ends within its grace however wedged the store is.

- `port_free`: `authz serve --workers N` checks each port it will share before it starts
  the workers, without SO_REUSEPORT, so a port another process holds is refused (gRPC
  and aiohttp would otherwise join it silently and split the traffic). A single server
  binds with `grpc.so_reuseport=0` and needs no probe.
- `die_with_parent`: a worker asks the kernel (Linux prctl PR_SET_PDEATHSIG) for SIGTERM
  when its parent dies, and watches its parent id as well (other systems, and the race
  of a parent that died before the prctl): orphaned workers never keep serving.
- `off_loop`: the blocking steps of a shutdown (audit flush, migration runtime, store)
  run in a daemon thread and are abandoned once their time is up, not awaited forever
  on a worker pool whose threads all wait on a locked table.
- `finish`: once the server has stopped, worker threads still blocked in the database
  would keep the interpreter alive (it joins them at exit); the process ends anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

from .logs import event

log = logging.getLogger("authz.server")
_PR_SET_PDEATHSIG = 1


def port_free(listen: str) -> str:
    """"" when host:port can be bound by us alone, else why not."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{listen} is already in use by another process"
            return f"cannot listen on {listen}: {exc.strerror}"
    return ""


def die_with_parent(parent: int, poll: float = 1.0) -> None:
    """Get SIGTERM when the process `parent` is gone (called first thing in a worker)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                event(log, logging.WARNING, "parent_gone", parent=parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(poll)

    threading.Thread(target=watch, name="authz-parent-watch", daemon=True).start()


async def off_loop(step: str, fn: Callable[[], object], timeout: float) -> bool:
    """Run a blocking shutdown step in a daemon thread; False when it had to be abandoned."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # logged; the shutdown goes on
            event(log, logging.ERROR, "shutdown_step_failed", step=step, error=str(exc))
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name=f"authz-stop-{step}", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(done), max(timeout, 0.0))
    except TimeoutError:
        event(log, logging.ERROR, "shutdown_step_abandoned", step=step, seconds=round(timeout, 3))
        return False
    return True


def finish(code: int, linger: float = 0.5) -> int:
    """Return `code`, or end the process with it when threads are still blocked (a
    wedged store): the interpreter would otherwise wait for them at exit, forever."""
    deadline = time.monotonic() + linger
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join(max(deadline - time.monotonic(), 0.0))
    stuck = [t.name for t in threading.enumerate()
             if t is not main and not t.daemon and t.is_alive()]
    if not stuck:
        return code
    event(log, logging.WARNING, "exit_with_blocked_threads", threads=stuck[:16], code=code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
