"""Directory snapshots in memory, one per organization: the decision hot path reads here.

A snapshot is immutable, so readers take it without a lock. `put` is monotonic (a
snapshot never replaces a newer one), so a slow load that started before a write cannot
undo the write's update. Each entry remembers when its revision was last confirmed
against the database; the store polls again only once that is `refresh_interval` old.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from authz.directory import DirectorySnapshot


@dataclass(slots=True)
class Entry:
    snapshot: DirectorySnapshot
    checked_at: float  # time.monotonic() when the revision was last confirmed
    failed_at: float = float("-inf")  # last refresh that could not reach the database


class SnapshotCache:
    """Bounded map org_id -> Entry; evicts the oldest-inserted organization when full."""

    def __init__(self, max_orgs: int = 20_000) -> None:
        self.max_orgs = max_orgs
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._org_locks: dict[str, threading.Lock] = {}

    def get(self, org_id: str) -> Entry | None:
        return self._entries.get(org_id)  # a dict read is atomic: no lock on the hot path

    def put(self, snap: DirectorySnapshot, checked_at: float | None = None) -> DirectorySnapshot:
        """Keep `snap` unless a newer one is already here; returns the one kept."""
        now = time.monotonic() if checked_at is None else checked_at
        with self._lock:
            cur = self._entries.get(snap.org_id)
            if cur is not None and cur.snapshot.revision > snap.revision:
                return cur.snapshot
            if cur is None and len(self._entries) >= self.max_orgs:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                self._org_locks.pop(oldest, None)
            self._entries[snap.org_id] = Entry(snap, now)
            return snap

    def confirm(self, org_id: str, revision: int, checked_at: float) -> bool:
        """The database still says `revision`: keep the entry fresh. False if it moved on."""
        entry = self._entries.get(org_id)
        if entry is None or entry.snapshot.revision != revision:
            return False
        entry.checked_at = max(entry.checked_at, checked_at)
        return True

    def invalidate(self, org_id: str | None = None) -> None:
        with self._lock:
            if org_id is None:
                self._entries.clear()
            else:
                self._entries.pop(org_id, None)

    def org_lock(self, org_id: str) -> threading.Lock:
        """Serializes database reads for one organization so a stale entry is refreshed once."""
        lock = self._org_locks.get(org_id)
        if lock is None:
            with self._lock:
                lock = self._org_locks.setdefault(org_id, threading.Lock())
        return lock

    def __len__(self) -> int:
        return len(self._entries)
