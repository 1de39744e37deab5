"""Engine: finds an organization's policy index and directory snapshot, then decides.

Organizations load lazily into a bounded LRU cache (warm-up loads them ahead); a reload
swaps an organization's index atomically, so a decision sees one revision or the next,
never a mix.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from authz.decision import CheckRequest, Decision
from authz.directory import DirectorySnapshot
from authz.engine.decide import decide_valid
from authz.engine.index import OrgIndex, load_org
from authz.engine.validate import validate
from authz.errors import AuthzError, FailedPrecondition, UnknownOrganization
from authz.policy import integrity

log = logging.getLogger("authz.policy")
Signature = tuple[tuple[int, int, int] | None, ...]

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies" / "generated"


class DirectorySource(Protocol):
    """Where directory snapshots come from: the store, or memory in tests."""

    def snapshot(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot: ...


class CachedDirectory(Protocol):
    """A directory that can answer from memory alone (the store): `cached` returns None
    where `snapshot` would have to read the database or wait for a revision."""

    def cached(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot | None: ...


class MemoryDirectory:
    """Directory snapshots held in memory (policy tests, benchmarks)."""

    def __init__(self, snapshots: Iterable[DirectorySnapshot] = ()) -> None:
        self._snaps = {s.org_id: s for s in snapshots}

    def put(self, snap: DirectorySnapshot) -> None:
        self._snaps[snap.org_id] = snap

    def snapshot(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot:
        return self._snaps.get(org_id) or DirectorySnapshot(org_id)

    def cached(self, org_id: str, min_revision: int = 0) -> DirectorySnapshot | None:
        return self._snaps.get(org_id)


class PolicySet:
    """Compiled organizations under a generated folder, loaded on demand, LRU-bounded."""

    def __init__(self, generated: Path = DEFAULT_POLICY_DIR, cache_size: int = 20_000) -> None:
        self.generated = generated
        self.cache_size = cache_size
        self._cache: OrderedDict[str, OrgIndex] = OrderedDict()
        self._lock = threading.Lock()
        # org -> (file signature, why it did not verify): refused until the files change
        self._broken: dict[str, tuple[Signature, integrity.PolicyIntegrityError]] = {}

    def broken(self) -> dict[str, str]:
        """Organizations whose files did not verify when last loaded, with the reason."""
        return {org: str(exc) for org, (_, exc) in list(self._broken.items())}

    def org_ids(self) -> list[str]:
        """Every organization with compiled policy (a manifest or a seal: one without the
        other is a half-written organization, which loading refuses)."""
        orgs = self.generated / "orgs"
        return sorted({p.stem for p in orgs.glob("*.json")} | {p.stem for p in orgs.glob(
            "*" + integrity.SEAL_SUFFIX)})

    def get(self, org_id: str) -> OrgIndex:
        idx = self._cache.get(org_id)
        if idx is not None:
            return idx
        return self.load(org_id)

    def cached(self, org_id: str) -> OrgIndex | None:
        """The loaded index, or None: never reads the disk (safe on an event loop)."""
        return self._cache.get(org_id)

    def load(self, org_id: str) -> OrgIndex:
        """(Re)load one organization from disk, verified, and swap it in. Files that do not
        verify raise PolicyUnavailable (for this organization only) and are remembered
        by their signature, so that traffic to a broken organization does not re-read it."""
        orgs = self.generated / "orgs"
        if not org_id or "/" in org_id or org_id.startswith(".") or not any(
            (orgs / f"{org_id}{ext}").is_file() for ext in (".json", integrity.SEAL_SUFFIX)
        ):
            raise UnknownOrganization(org_id)
        sig = _signature(orgs, org_id)
        known = self._broken.get(org_id)
        if known is not None and known[0] == sig:
            raise known[1]
        try:
            idx = load_org(self.generated, org_id)
        except integrity.PolicyIntegrityError as exc:
            self._broken[org_id] = (sig, exc)
            log.error("policy_load_failed", extra={"fields": {
                "org_id": org_id, "file": exc.file, "problem": exc.problem}})
            raise
        self._broken.pop(org_id, None)
        with self._lock:
            self._cache[org_id] = idx
            self._cache.move_to_end(org_id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return idx

    def put(self, idx: OrgIndex) -> None:
        """Swap in an index loaded (and verified) elsewhere: the hot reload."""
        with self._lock:
            self._cache[idx.org_id] = idx
            self._broken.pop(idx.org_id, None)

    def warm(self, org_ids: Iterable[str] | None = None) -> int:
        """Load organizations ahead of traffic; returns how many are loaded."""
        ids = list(org_ids) if org_ids is not None else self.org_ids()
        for org_id in ids[: self.cache_size]:
            self.load(org_id)
        return len(self._cache)

    def loaded(self) -> list[str]:
        return list(self._cache)


def _signature(orgs: Path, org_id: str) -> Signature:
    """(inode, size, mtime) of an organization's compiled files; None for a missing one."""
    out: list[tuple[int, int, int] | None] = []
    for ext in (".csv", ".json", integrity.SEAL_SUFFIX):
        try:
            st = os.stat(orgs / f"{org_id}{ext}")
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Engine:
    """Answers Check questions for every organization."""

    def __init__(self, policies: PolicySet, directory: DirectorySource) -> None:
        self.policies = policies
        self.directory = directory
        cached = getattr(directory, "cached", None)  # a CachedDirectory, when it is one
        self._peek: Callable[[str, int], DirectorySnapshot | None] | None = cached

    def check(self, req: CheckRequest) -> Decision:
        validate(req)
        org = self.policies.get(req.org_id)
        snap = self.directory.snapshot(req.org_id, req.min_revision)
        return decide_valid(req, org, snap)

    def check_cached(self, req: CheckRequest) -> Decision | None:
        """`check` from memory only: None when the organization's policy is not loaded or
        its directory snapshot is not fresh enough (that needs a disk or database read, or a
        wait for min_revision), so that a caller on an event loop can decide inline and
        hand only those cases to a thread. A malformed request raises, as in `check`."""
        validate(req)
        org = self.policies.cached(req.org_id)
        peek = self._peek
        if org is None or peek is None:
            return None
        snap = peek(req.org_id, req.min_revision)
        if snap is None:
            return None
        return decide_valid(req, org, snap)

    def check_many(self, reqs: Sequence[CheckRequest]) -> list[Decision | AuthzError]:
        """Decide each request on its own; a bad item is returned as its error.

        Snapshots are fetched once per (organization, min_revision), and a revision an
        organization did not reach fails its later items at once: a batch waits for a
        revision once per organization, never once per item."""
        out: list[Decision | AuthzError] = []
        snaps: dict[tuple[str, int], DirectorySnapshot] = {}
        unreached: dict[str, tuple[int, FailedPrecondition]] = {}  # org -> lowest failed
        for req in reqs:
            try:
                validate(req)
                org = self.policies.get(req.org_id)
                key = (req.org_id, req.min_revision)
                snap = snaps.get(key)
                if snap is None:
                    failed = unreached.get(req.org_id)
                    if failed is not None and req.min_revision >= failed[0]:
                        raise failed[1]
                    try:
                        snap = self.directory.snapshot(req.org_id, req.min_revision)
                    except FailedPrecondition as exc:
                        unreached[req.org_id] = (req.min_revision, exc)
                        raise
                    snaps[key] = snap
                out.append(decide_valid(req, org, snap))
            except AuthzError as exc:
                out.append(exc)
        return out
