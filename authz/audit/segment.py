"""The local audit log's file format: segments of length-prefixed, checksummed records.

A segment is one process's append-only file (`seg-<pid>-<ns>.log` in the log folder).
Each record is an 8-byte header, the payload's length and CRC-32 (little-endian u32
each), then the payload: the unsealed entries of one write as compact JSON, a list of
lists in `_FIELDS` order (a record of an older version holds one entry, a list of
fields); numbering and hashing happen in the store, under the organization's head lock.
One record per write: a CheckBatch's 1,000 entries are one JSON text and one checksum,
written, read and (torn by a crash before they were acknowledged) lost together. A
record cut short by a crash or a checksum that does not match ends what is read: what
follows it is never trusted. Beside each segment, `<segment>.shipped` holds how far it has been
shipped to the store (a hint: the shipper de-duplicates by decision id after a crash).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from authz.audit.chain import AuditEntry, Unsealed

log = logging.getLogger("authz.audit")
_HEADER = struct.Struct("<II")
_FIELDS = ("org_id", "kind", "at", "decision_id", "crm_user", "acting_kind", "acting_id",
           "action", "module", "record_id", "allowed", "reason", "mode", "policy_revision",
           "directory_revision", "caller")
#: json.dumps(..., ensure_ascii=False, separators=(",", ":")) of a record's flat list, by
#: the C encoder made once (JSONEncoder.encode builds it per call: ~1.5 µs an entry).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # None without CPython's _json
_encode = _c_make_encoder and _c_make_encoder(
    None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",",
    False, False, True)
_slow_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value: object) -> str:
    return "".join(_encode(value, 0)) if _encode else _slow_dumps(value)


def row(e: AuditEntry) -> list[object]:
    """An entry's fields as the record holds them (`_FIELDS` order)."""
    return [e.org_id, e.kind, e.at, e.decision_id, e.crm_user, e.acting_kind, e.acting_id,
            e.action, e.module, e.record_id, e.allowed, e.reason, e.mode, e.policy_revision,
            e.directory_revision, e.caller]


def record(rows: Sequence[Sequence[object]]) -> bytes:
    """Entries, as `row` gives them, as one record (header + payload)."""
    payload = _dumps(rows).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def frames(entries: Sequence[AuditEntry]) -> bytes:
    """Entries as one record ("" for none)."""
    return record([row(e) for e in entries]) if entries else b""


def frame(e: AuditEntry) -> bytes:
    """One entry as a record of the older format (a list of fields, not a list of them):
    still read, so a log left by an older version is shipped."""
    payload = _dumps(row(e)).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class Logged(NamedTuple):
    """An entry as the log holds it (unsealed: no seq, no hashes), in `_FIELDS` order.
    What the shipper reads and the store seals (authz.audit.chain.Unsealed): a tuple is
    made in ~0.3 µs, a frozen AuditEntry in ~2 µs (about 2 ms a shipped batch of 1,000)."""

    org_id: str
    kind: str
    at: str
    decision_id: str
    crm_user: str
    acting_kind: str
    acting_id: str
    action: str
    module: str
    record_id: str
    allowed: bool
    reason: str
    mode: str
    policy_revision: str
    directory_revision: int
    caller: str


_N = len(_FIELDS)
_logged = Logged._make


def entry(e: Unsealed) -> AuditEntry:
    """The AuditEntry (seq 0, unsealed) of an entry read from the log."""
    if isinstance(e, AuditEntry):
        return e
    return AuditEntry(e.org_id, 0, e.kind, e.at, e.decision_id, e.crm_user, e.acting_kind,
                      e.acting_id, e.action, e.module, e.record_id, e.allowed, e.reason,
                      e.mode, e.policy_revision, e.directory_revision, e.caller)


def _entries(payload: bytes) -> list[Logged]:
    """The entries of one record's payload (ValueError or TypeError: not a record's)."""
    data = json.loads(payload)
    if not isinstance(data, list) or not data:
        raise ValueError("not a list of fields")
    if isinstance(data[0], list):
        if not all(type(fields) is list and len(fields) == _N for fields in data):
            raise TypeError("a record's entry is not a list of fields")
        return [_logged(fields) for fields in data]
    return [_logged(data)]  # the older format: one entry (_make: TypeError unless 16 fields)


def read(path: Path, start: int, end: int | None = None, limit: int = 1000
         ) -> tuple[list[AuditEntry], list[int], bool]:
    """`read_logged`, as AuditEntry objects."""
    got, ends, damaged = read_logged(path, start, end, limit)
    return [entry(e) for e in got], ends, damaged


def read_logged(path: Path, start: int, end: int | None = None, limit: int = 1000
                ) -> tuple[list[Logged], list[int], bool]:
    """Whole records from byte `start` (to `end`, or the end of the file) until at least
    `limit` entries: the entries, the offset just after each one's record, and whether
    reading stopped at damage (a torn or corrupt record), which the caller reports."""
    entries: list[Logged] = []
    ends: list[int] = []
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(-1 if end is None else max(0, end - start))
    pos = 0
    while len(entries) < limit:
        if len(data) - pos < _HEADER.size:
            return entries, ends, len(data) != pos
        size, crc = _HEADER.unpack_from(data, pos)
        payload = data[pos + _HEADER.size:pos + _HEADER.size + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            return entries, ends, True
        try:
            got = _entries(payload)
        except (ValueError, TypeError):
            return entries, ends, True
        pos += _HEADER.size + size
        entries += got
        ends += [start + pos] * len(got)
    return entries, ends, False


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is in the file (a regular file rarely writes short)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_open(fd: int, start: int, end: int) -> bytes:
    """Bytes `start`..`end` of a segment this process holds open, even once its name is
    gone (deleted or renamed): /proc/self/fd reopens the file itself (Linux), since the
    writer's descriptor is write-only."""
    with open(f"/proc/self/fd/{fd}", "rb") as f:
        f.seek(start)
        data = f.read(max(0, end - start))
    if len(data) != end - start:
        raise OSError(f"segment shorter than written: {len(data)} of {end - start} bytes")
    return data


def recovered(path: Path) -> int:
    """How many bytes at the start of `path` were copied from a lost segment (0: none):
    entries a shipper may have stored already, so shipped de-duplicated."""
    try:
        return int((path.parent / (path.name + ".recovered")).read_bytes().strip() or 0)
    except (OSError, ValueError):
        return 0


def mark_recovered(path: Path, size: int) -> None:
    """Written before the copied bytes, so a shipper that sees them reads it too."""
    (path.parent / (path.name + ".recovered")).write_bytes(b"%d\n" % size)


def shipped(path: Path) -> int:
    """How far `path` was shipped, as its cursor file says (0: from the start)."""
    try:
        return int((path.parent / (path.name + ".shipped")).read_bytes().strip() or 0)
    except (OSError, ValueError):
        return 0


def mark_shipped(path: Path, offset: int) -> None:
    """Record the cursor: one fixed-width pwrite (a hint, read back whole or as a lower
    offset: the shipper de-duplicates what it re-ships after a crash)."""
    cursor = path.parent / (path.name + ".shipped")
    fd = os.open(cursor, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"%020d\n" % offset, 0)
    finally:
        os.close(fd)
    if not path.exists():  # the segment was removed meanwhile: no cursor left behind for it
        with contextlib.suppress(FileNotFoundError):
            cursor.unlink()


def order(path: Path) -> tuple[int, int]:
    """A segment's place among its process's: (start time, number)."""
    parts = path.stem.split("-")
    try:
        return int(parts[2]), int(parts[3])
    except (IndexError, ValueError):
        return 0, 0


def remove(path: Path) -> None:
    """A fully shipped segment and its cursor (and recovery mark) go."""
    for p in (path, path.parent / (path.name + ".shipped"),
              path.parent / (path.name + ".recovered")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def default_log_dir(db_url: str, configured: str = "") -> Path:
    """The log folder for a store: `configured`; else `<file>.audit-log` beside an SQLite
    file (two stores in one folder keep two logs); else var/audit-log/<digest of the URL>,
    so one store's log never ships to another."""
    if configured:
        return Path(configured)
    if db_url.startswith("sqlite:///"):
        db_file = Path(db_url.removeprefix("sqlite:///").split("?", 1)[0])
        return db_file.parent / (db_file.name + ".audit-log")
    return Path("var/audit-log") / hashlib.sha256(db_url.encode()).hexdigest()[:12]
