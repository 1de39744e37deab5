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
from json.encoder import encode_basestring
from typing import Any, Protocol

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


class Unsealed(Protocol):
    """What sealing reads of an entry: an AuditEntry, or a row of the local log
    (authz.audit.segment.Logged), which the shipper seals without building an entry."""

    @property
    def org_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> str: ...
    @property
    def decision_id(self) -> str: ...
    @property
    def crm_user(self) -> str: ...
    @property
    def acting_kind(self) -> str: ...
    @property
    def acting_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def module(self) -> str: ...
    @property
    def record_id(self) -> str: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def policy_revision(self) -> str: ...
    @property
    def directory_revision(self) -> int: ...
    @property
    def caller(self) -> str: ...


_CONTENT = tuple(f.name for f in fields(AuditEntry) if f.name != "hash")

# The canonical JSON of `content_hash`, written out: the keys in sorted order, each value
# in one %s. Strings go through json's own string encoder (the one json.dumps uses with
# ensure_ascii=False), so the text, and therefore the hash, is byte for byte what
# json.dumps(..., sort_keys=True) gives: chains written before and after verify alike.
_SORTED = tuple(sorted(_CONTENT))
_TEMPLATE = "{" + ",".join(f'"{k}":%s' for k in _SORTED) + "}"
_esc = encode_basestring


def _canonical_json(values: dict[str, object]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _content_hash(org_id: str, seq: int, kind: str, at: str, decision_id: str, crm_user: str,
                  acting_kind: str, acting_id: str, action: str, module: str, record_id: str,
                  allowed: bool, reason: str, mode: str, policy_revision: str,
                  directory_revision: int, caller: str, prev_hash: str) -> str:
    """`content_hash` from the field values (in AuditEntry order, without the hash)."""
    if type(seq) is int and type(directory_revision) is int and type(allowed) is bool:
        esc = _esc
        try:
            text = _TEMPLATE % (  # sorted key order: see _SORTED
                esc(acting_id), esc(acting_kind), esc(action), "true" if allowed else "false",
                esc(at), esc(caller), esc(crm_user), esc(decision_id), directory_revision,
                esc(kind), esc(mode), esc(module), esc(org_id), esc(policy_revision),
                esc(prev_hash), esc(reason), esc(record_id), seq)
        except TypeError:  # a value that is not a str: json.dumps decides how it reads
            text = ""
        if text:
            return hashlib.sha256(text.encode()).hexdigest()
    values = dict(zip(_CONTENT, (org_id, seq, kind, at, decision_id, crm_user, acting_kind,
                                 acting_id, action, module, record_id, allowed, reason, mode,
                                 policy_revision, directory_revision, caller, prev_hash),
                      strict=True))
    return hashlib.sha256(_canonical_json(values).encode()).hexdigest()


def content_hash(entry: AuditEntry) -> str:
    """SHA-256 over the entry's canonical JSON (every field but the hash itself): the
    json.dumps of those fields with sorted keys, compact separators, UTF-8 (not escaped)."""
    return _content_hash(entry.org_id, entry.seq, entry.kind, entry.at, entry.decision_id,
                         entry.crm_user, entry.acting_kind, entry.acting_id, entry.action,
                         entry.module, entry.record_id, entry.allowed, entry.reason, entry.mode,
                         entry.policy_revision, entry.directory_revision, entry.caller,
                         entry.prev_hash)


def _self_check() -> None:
    """The written-out template must give json.dumps's text (the key order above is by hand)."""
    values: list[object] = [f"v{i}\"é\n" for i in range(len(_CONTENT))]
    values[_CONTENT.index("seq")], values[_CONTENT.index("allowed")] = 7, True
    values[_CONTENT.index("directory_revision")] = 11
    expected = hashlib.sha256(_canonical_json(dict(zip(_CONTENT, values, strict=True))).encode())
    if _content_hash(*values) != expected.hexdigest():  # type: ignore[arg-type]
        raise AssertionError("authz.audit.chain: the canonical template does not match json.dumps")


_self_check()


def sealed_fields(entry: Unsealed, prev_hash: str, seq: int) -> tuple[Any, ...]:
    """The field values (AuditEntry order, hash last) of `entry` numbered `seq` and linked
    after `prev_hash`: what the store inserts, without building an entry."""
    e = entry
    return (e.org_id, seq, e.kind, e.at, e.decision_id, e.crm_user, e.acting_kind, e.acting_id,
            e.action, e.module, e.record_id, e.allowed, e.reason, e.mode, e.policy_revision,
            e.directory_revision, e.caller, prev_hash,
            _content_hash(e.org_id, seq, e.kind, e.at, e.decision_id, e.crm_user, e.acting_kind,
                          e.acting_id, e.action, e.module, e.record_id, e.allowed, e.reason,
                          e.mode, e.policy_revision, e.directory_revision, e.caller, prev_hash))


def seal(entry: AuditEntry, prev_hash: str, seq: int | None = None) -> AuditEntry:
    """The entry linked after `prev_hash` (numbered `seq`, when given), with its hash set.

    Built positionally from the fields (no dataclasses.replace/asdict, no intermediate
    entry): the batched writer seals every entry on its way to the store.
    """
    return AuditEntry(*sealed_fields(entry, prev_hash, entry.seq if seq is None else seq))


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
