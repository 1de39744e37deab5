"""Append-only audit entries, hash-chained per organization.

Each entry's hash covers its canonical content and the previous entry's hash, so a
changed row breaks its own hash and a removed row breaks the link of the next one.
`verify` walks a chain and names the first entry that does not hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, fields

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded decision or attribution."""

    org_id: str
    seq: int  # 1-based position in the organization's chain
    kind: str  # "check" or "attribute"
    at: str  # ISO 8601 UTC time
    decision_id: str
    crm_user: str
    acting_kind: str  # identity kind acted as
    acting_id: str  # finance user id, integration user id or integration owner
    action: str
    module: str
    record_id: str
    allowed: bool
    reason: str
    mode: str
    policy_revision: str
    directory_revision: int
    caller: str  # calling service
    prev_hash: str = GENESIS
    hash: str = ""


_CONTENT = tuple(f.name for f in fields(AuditEntry) if f.name != "hash")


def content_hash(entry: AuditEntry) -> str:
    """SHA-256 over the entry's canonical JSON (every field but the hash itself)."""
    data = {k: getattr(entry, k) for k in _CONTENT}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def seal(entry: AuditEntry, prev_hash: str) -> AuditEntry:
    """The entry linked after `prev_hash`, with its hash set.

    Built field by field rather than through dataclasses.asdict (a deep copy, an order of
    magnitude slower): the batched writer seals every entry on its way to the store.
    """
    values = {k: getattr(entry, k) for k in _CONTENT}
    values["prev_hash"] = prev_hash
    linked = AuditEntry(**values)
    return AuditEntry(**values, hash=content_hash(linked))


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain does not hold, and why."""

    org_id: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"{self.org_id} entry {self.seq}: {self.problem}"


def verify(entries: Iterable[AuditEntry], start_hash: str = GENESIS, start_seq: int = 1,
           head: tuple[int, str] | None = None, org_id: str = "") -> list[Break]:
    """Check one organization's chain, in sequence order. Empty list: it holds.

    `start_hash`/`start_seq` let a chain trimmed by retention be verified from its
    first kept entry (whose link the retention checkpoint records). `head` is the last
    (seq, hash) recorded apart from the entries: without it, removing the newest entries
    would leave a chain that still holds.
    """
    breaks: list[Break] = []
    prev, expected_seq = start_hash, start_seq
    for e in entries:
        if e.seq != expected_seq:
            breaks.append(Break(e.org_id, expected_seq,
                                f"missing: the chain jumps from {expected_seq - 1} to {e.seq}"))
        if e.prev_hash != prev:
            breaks.append(Break(e.org_id, e.seq, "does not link to the entry before it "
                                "(an entry was removed or reordered)"))
        if content_hash(e) != e.hash:
            breaks.append(Break(e.org_id, e.seq, "content changed after it was recorded"))
        prev, expected_seq = e.hash, e.seq + 1
    if head is not None and (expected_seq - 1, prev) != head:
        breaks.append(Break(org_id, head[0], f"the chain ends at entry {expected_seq - 1}, "
                            f"but entry {head[0]} was recorded (entries removed at the end)"))
    return breaks
