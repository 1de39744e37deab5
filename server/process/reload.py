"""Policy (and callers file) hot reload: poll the compiled folder, or reload on SIGHUP.

`authz policy compile` swaps the generated folder in with a rename, so a reader sees the
old files or the new ones. The reloader notices a change by each organization's file
signature (inode, size, mtime of its .json, .csv and .seal, and the folder's inode), loads the new
index off the event loop, checks it, and only then swaps it into the PolicySet (the
per-file scan runs when the folder itself moved, while a reload fails, and every
FULL_SCAN-th poll for a file edited in place; otherwise a poll is a few stats): a
decision in flight keeps the index it already holds, the next one gets the new one, and
no Check fails because a reload happened.

A broken policy (any file that does not verify against the organization's seal, see
authz.policy.integrity; a policy that cannot answer a smoke question) is refused: the last
good revision keeps serving, and the failure is reported in the log
(`policy_reload_failed`), in health (service
`authz.policy` turns NOT_SERVING while any organization is stuck on an older revision;
the overall health stays SERVING, since decisions are still correct for that revision),
and in metrics (authz_policy_reload_failures_total, authz_policy_reload_failing).
The same files are not retried until they change again or SIGHUP forces a full reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from grpc_health.v1 import health, health_pb2

from authz.decision import CheckRequest
from authz.directory import DirectorySnapshot
from authz.engine.decide import decide
from authz.engine.engine import PolicySet
from authz.engine.index import OrgIndex, load_org
from authz.policy.integrity import SEAL_SUFFIX

from . import metrics
from .logs import event

log = logging.getLogger("authz.server")
POLICY_SERVICE = "authz.policy"
FULL_SCAN = 5  # polls: the most a file edited in place (not swapped in) goes unseen
Signature = tuple[tuple[int, int, int], ...]


def _stat(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, 0, 0)  # a missing file is a change too: the load then refuses it
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _moved(generated: Path, org: str, sig: Signature) -> bool:
    """Whether an organization's files changed since `sig` was taken."""
    now = scan(generated)
    return now is None or now.get(org) != sig


def scan(generated: Path) -> dict[str, Signature] | None:
    """Every organization's file signature; None while the folder is being swapped."""
    orgs = generated / "orgs"
    try:
        model = generated.stat()
        with os.scandir(orgs) as it:
            names = {e.name.rsplit(".", 1)[0] for e in it
                     if e.name.endswith((".json", SEAL_SUFFIX))}
    except FileNotFoundError:
        return None
    here = (model.st_ino, 0, 0)
    return {org: (here, _stat(orgs / f"{org}.json"), _stat(orgs / f"{org}.csv"),
                  _stat(orgs / f"{org}{SEAL_SUFFIX}")) for org in names}


def load_checked(generated: Path, org_id: str) -> OrgIndex:
    """Load an organization (verified against its seal: `load_org`) and prove the index
    usable; raises on anything wrong."""
    idx = load_org(generated, org_id)
    # One question through the real decision code: a policy that cannot answer it is broken.
    decide(CheckRequest(org_id, "reload-smoke-test", "view", "invoices"), idx,
           DirectorySnapshot(org_id))
    return idx


@dataclass
class ReloadReport:
    reloaded: dict[str, str] = field(default_factory=dict)  # org -> new revision
    failed: dict[str, str] = field(default_factory=dict)  # org -> error


class PolicyReloader:
    """Keeps a PolicySet in step with its generated folder."""

    def __init__(self, policies: PolicySet, executor: Executor,
                 servicer: health.aio.HealthServicer | None = None, interval: float = 2.0,
                 extra: Callable[[bool], None] | None = None,
                 extra_sig: Callable[[], object] | None = None) -> None:
        self.policies = policies
        self.executor = executor
        self.servicer = servicer
        self.interval = interval
        self.extra = extra  # another reloadable (the callers file); gets `force`
        self.extra_sig = extra_sig  # a cheap signature of what `extra` reloads
        self.failing: dict[str, str] = {}
        self._seen: dict[str, Signature] = scan(policies.generated) or {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._health: int | None = None  # the authz.policy status last set

    def reload_changed(self, force: bool = False) -> ReloadReport:
        """Reload what changed on disk (everything loaded, with force); runs in a thread."""
        report = ReloadReport()
        sigs = scan(self.policies.generated)
        if sigs is None:
            return report  # mid-swap: the next poll sees the new folder
        loaded = set(self.policies.loaded())
        for org, error in self.policies.broken().items():  # refused on a cold load
            if org not in self.failing:
                report.failed[org] = error
        for org, sig in sorted(sigs.items()):
            if not force and self._seen.get(org) == sig:
                continue
            self._seen[org] = sig
            if org not in loaded and org not in self.failing and org not in report.failed:
                continue  # not cached: its next use loads the new files anyway
            old = self.policies.get(org).revision if org in loaded else ""
            try:
                idx = load_checked(self.policies.generated, org)
            except Exception as exc:
                if _moved(self.policies.generated, org, sig):
                    # The folder was swapped while we read it (a compile landing): not a
                    # broken policy. Forget the signature so the next poll loads it.
                    self._seen.pop(org, None)
                    continue
                report.failed[org] = f"{type(exc).__name__}: {exc}"
                continue
            report.failed.pop(org, None)
            self.policies.put(idx)
            report.reloaded[org] = idx.revision
            event(log, logging.INFO, "policy_reloaded", org_id=org, old_revision=old,
                  revision=idx.revision)
        for org, error in report.failed.items():
            metrics.RELOAD_FAILURES.labels(org).inc()
            metrics.RELOAD_FAILING.labels(org).set(1)
            self.failing[org] = error
            event(log, logging.ERROR, "policy_reload_failed", org_id=org, error=error,
                  serving_revision=self.policies.get(org).revision if org in loaded else "")
        for org in report.reloaded:
            metrics.RELOADS.inc()
            if self.failing.pop(org, None) is not None:
                metrics.RELOAD_FAILING.labels(org).set(0)
        if self.extra is not None:
            self.extra(force)
        return report

    async def reload(self, force: bool = False) -> ReloadReport:
        """One reload pass off the event loop, then health updated to match."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(self.executor, self.reload_changed, force)
            status = (health_pb2.HealthCheckResponse.NOT_SERVING if self.failing
                      else health_pb2.HealthCheckResponse.SERVING)
            if self.servicer is not None and status != self._health:
                self._health = status  # set on a change only: an idle poll does no more
                await self.servicer.set(POLICY_SERVICE, status)
            return report

    def trigger(self) -> None:
        """SIGHUP: a forced reload of every loaded organization (and the callers file)."""
        event(log, logging.INFO, "reload_requested", signal="SIGHUP")
        asyncio.get_running_loop().create_task(self.reload(force=True))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="authz-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _folder_sig(self) -> object:
        """A few stats, cheap enough for the event loop: the generated folder (a compile
        swaps it in by rename), its orgs folder (files renamed in), model.conf, and what
        `extra_sig` watches (the callers file)."""
        generated = self.policies.generated
        out: list[object] = []
        for path in (generated, generated / "orgs", generated / "model.conf"):
            try:
                out.append(_stat(path))
            except OSError:
                out.append(None)
        out.append(self.extra_sig() if self.extra_sig is not None else None)
        return tuple(out)

    async def _run(self) -> None:
        if self.servicer is not None:
            self._health = health_pb2.HealthCheckResponse.SERVING
            await self.servicer.set(POLICY_SERVICE, self._health)
        seen, polls = self._folder_sig(), 0
        while self.interval > 0:
            await asyncio.sleep(self.interval)
            # The per-organization scan (a worker thread, a stat per file) only when the
            # folder moved, while something fails, or every FULL_SCAN-th poll (a file
            # edited in place): an idle server's poll is a few stats on the loop.
            sig = self._folder_sig()
            polls += 1
            if sig == seen and not self.failing and polls < FULL_SCAN:
                continue
            seen, polls = sig, 0
            try:
                await self.reload()
            except Exception as exc:  # a reload bug must not end reloading
                event(log, logging.ERROR, "reload_error", error=repr(exc), exc_info=True)
