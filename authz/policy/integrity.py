"""Policy integrity: the seal the compiler writes beside each organization's files, and
the check every load makes before a single row is used.

A compiled organization is three files: `orgs/<org>.csv` (Casbin rows), `orgs/<org>.json`
(the manifest) and `orgs/<org>.seal` (this module's). The seal names the organization and
the revision, and holds each file's SHA-256 and size, the number of rows of each kind
(p grants, p2 field rules, p3 approvers, p4 blocked actions, g links) and the digest of
the Casbin model the rows were compiled for. A load reads each file's bytes once,
verifies them, and only then parses those same bytes: a file cut short, reordered,
swapped for another organization's or an older revision's, or a seal missing (a copy
that stopped half-way) is refused, naming the file. What the manifest says exists
(field rules, approval levels, blocked actions) must also be in the rows: a missing
restriction table is never read as "no restriction" (`check_tables`).

A seal may also carry an HMAC under a policy key (`sealkey`): a process that requires a key
refuses a seal without a valid one; otherwise the MAC is not checked (`Verified.signed_by`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz.errors import PolicyUnavailable
from authz.policy import sealkey

SEAL_FORMAT = 1
SEAL_SUFFIX = ".seal"
ROW_KINDS = ("p", "p2", "p3", "p4", "g")


class PolicyIntegrityError(PolicyUnavailable):
    """A compiled file does not verify; `file` is its path, `problem` what is wrong."""

    def __init__(self, org_id: str, file: str, problem: str) -> None:
        self.file = file
        self.problem = problem
        super().__init__(org_id, f"{file}: {problem}")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def revision_of(model: str, body: str, settings: Mapping[str, Any]) -> str:
    """An organization's revision: a hash of everything a decision depends on (the model,
    the rows, the settings), so that a load can recompute it from what it read."""
    digest = hashlib.sha256()
    for part in (model, body, json.dumps(settings, sort_keys=True)):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _split_header(text: str) -> tuple[str, str]:
    """(header comment lines, body rows) of a compiled CSV."""
    end = 0
    while text.startswith("#", end):
        nl = text.find("\n", end)
        end = len(text) if nl < 0 else nl + 1
    return text[:end], text[end:]


def row_counts(csv_text: str) -> dict[str, int]:
    """Rows per kind, counted on the text as the compiler wrote it (one row a line)."""
    counts: Counter[str] = Counter()
    for line in csv_text.splitlines():
        kind = line.split(",", 1)[0].strip()
        if kind in ROW_KINDS:
            counts[kind] += 1
    return {k: counts.get(k, 0) for k in ROW_KINDS}


def seal(org_id: str, revision: str, model: str, csv: bytes, manifest: bytes,
         extra: Mapping[str, bytes] | None = None) -> bytes:
    """The seal of one compiled organization (deterministic bytes); `extra`: other files
    of the organization by name (the source map), verified as the others are."""
    body: dict[str, Any] = {
        "format": SEAL_FORMAT,
        "org_id": org_id,
        "revision": revision,
        "model_sha256": _digest(model.encode()),
        "files": {
            f"{org_id}.csv": {"sha256": _digest(csv), "bytes": len(csv),
                              "rows": row_counts(csv.decode())},
            f"{org_id}.json": {"sha256": _digest(manifest), "bytes": len(manifest)},
            **{name: {"sha256": _digest(data), "bytes": len(data)}
               for name, data in sorted((extra or {}).items())},
        },
    }
    return (json.dumps(body, indent=2) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Verified:
    """An organization's compiled files, read once and verified: parse these, not the disk."""

    org_id: str
    revision: str
    csv_text: str
    manifest: dict[str, Any]
    rows: dict[str, int]
    extra: dict[str, bytes]  # other sealed files by name (the source map)
    signed_by: str = ""  # the key id the seal names ("": unsigned)
    mac_checked: bool = False  # whether that signature was verified (a key was required)


def _read(org_id: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PolicyIntegrityError(org_id, str(path), "missing (half-written or removed)"
                                   ) from None
    except OSError as exc:
        raise PolicyIntegrityError(org_id, str(path), f"unreadable ({exc.strerror})") from None


def _check_file(org_id: str, path: Path, data: bytes, want: Mapping[str, Any]) -> None:
    size = want.get("bytes")
    if size != len(data):
        what = "cut short" if isinstance(size, int) and len(data) < size else "changed"
        raise PolicyIntegrityError(org_id, str(path), f"{what}: {len(data)} bytes, the seal "
                                   f"says {size}")
    if want.get("sha256") != _digest(data):
        raise PolicyIntegrityError(org_id, str(path), "content differs from the seal (edited, "
                                   "reordered, or another organization's or revision's file)")


def _header(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _split_header(text)[0].splitlines():
        key, sep, value = line[1:].strip().partition(": ")
        if sep and key in ("organization", "revision"):
            out[key] = value
    return out


def verify(orgs_dir: Path, org_id: str, model: str) -> Verified:
    """Read an organization's compiled files and verify them against its seal."""
    seal_path = orgs_dir / f"{org_id}{SEAL_SUFFIX}"
    raw = _read(org_id, seal_path)
    try:
        sealed = json.loads(raw)
        files = sealed["files"]
        if not isinstance(files, dict):
            raise TypeError("files")
    except (ValueError, KeyError, TypeError):
        raise PolicyIntegrityError(org_id, str(seal_path), "not a readable seal (cut short "
                                   "or edited)") from None
    if sealed.get("format") != SEAL_FORMAT:
        raise PolicyIntegrityError(org_id, str(seal_path),
                                   f"seal format {sealed.get('format')!r}, expected {SEAL_FORMAT}")
    if sealed.get("org_id") != org_id:
        raise PolicyIntegrityError(org_id, str(seal_path), f"seal of organization "
                                   f"{sealed.get('org_id')!r}, not {org_id!r}")
    keys = sealkey.required()
    unsigned = sealkey.check(sealed, keys)
    if unsigned is not None:
        raise PolicyIntegrityError(org_id, str(seal_path), unsigned)
    revision = sealed.get("revision")
    if not isinstance(revision, str) or not revision:
        raise PolicyIntegrityError(org_id, str(seal_path), "seal names no revision")
    if sealed.get("model_sha256") != _digest(model.encode()):
        raise PolicyIntegrityError(org_id, str(seal_path), "compiled for another Casbin model "
                                   "(recompile with this version)")
    csv_path, json_path = orgs_dir / f"{org_id}.csv", orgs_dir / f"{org_id}.json"
    for path in (csv_path, json_path):
        if not isinstance(files.get(path.name), dict):
            raise PolicyIntegrityError(org_id, str(seal_path), f"seal does not cover {path.name}")
    csv_bytes, json_bytes = _read(org_id, csv_path), _read(org_id, json_path)
    _check_file(org_id, csv_path, csv_bytes, files[csv_path.name])
    _check_file(org_id, json_path, json_bytes, files[json_path.name])
    try:
        csv_text = csv_bytes.decode()
        manifest = json.loads(json_bytes)
    except ValueError:
        raise PolicyIntegrityError(org_id, str(json_path), "sealed, but not readable") from None
    head = _header(csv_text)
    if head.get("organization") != org_id or head.get("revision") != revision:
        raise PolicyIntegrityError(org_id, str(csv_path), f"header names {head.get('organization')!r} "
                                   f"revision {head.get('revision')!r}, the seal {org_id!r} {revision!r}")
    if manifest.get("org_id") != org_id or manifest.get("revision") != revision:
        raise PolicyIntegrityError(org_id, str(json_path), f"names {manifest.get('org_id')!r} "
                                   f"revision {manifest.get('revision')!r}, the seal "
                                   f"{org_id!r} {revision!r}")
    _, body = _split_header(csv_text)
    settings = {k: v for k, v in manifest.items() if k not in ("revision", "sources")}
    if revision_of(model, body, settings) != revision:
        raise PolicyIntegrityError(org_id, str(csv_path), f"rows and settings do not make "
                                   f"revision {revision}")
    rows = files[csv_path.name].get("rows")
    if not isinstance(rows, dict) or row_counts(csv_text) != rows:
        raise PolicyIntegrityError(org_id, str(csv_path), f"rows per kind {row_counts(csv_text)}, "
                                   f"the seal says {rows}")
    extra: dict[str, bytes] = {}
    for name, want in files.items():
        if name in (csv_path.name, json_path.name):
            continue
        if not isinstance(want, dict) or "/" in name or name.startswith("."):
            raise PolicyIntegrityError(org_id, str(seal_path), f"seal names {name!r}")
        data = _read(org_id, orgs_dir / name)
        _check_file(org_id, orgs_dir / name, data, want)
        extra[name] = data
    return Verified(org_id, revision, csv_text, manifest, rows, extra,
                    sealkey.signer(sealed), bool(keys))


def check_loaded(org_id: str, path: str, rows: Mapping[str, int],
                 loaded: Mapping[str, int]) -> None:
    """The rows Casbin loaded, per kind, are exactly the sealed ones (none dropped by a
    parser that skipped a line it could not read)."""
    for kind in ROW_KINDS:
        if loaded.get(kind, 0) != rows.get(kind, 0):
            raise PolicyIntegrityError(org_id, path, f"{loaded.get(kind, 0)} {kind} rows loaded, "
                                       f"{rows.get(kind, 0)} sealed")


def check_tables(org_id: str, path: str, manifest: Mapping[str, Any],
                 field_modules: Iterable[tuple[str, str]],
                 approver_levels: Iterable[tuple[str, str, str, int]],
                 blocked: Iterable[tuple[str, str, str]]) -> None:
    """Every restriction the manifest announces has its rows: field rules for each module
    with field rules, approvers for every level of every rule with levels, and the blocked
    actions of every module with approval on. A missing table is a broken policy."""
    have_fields = set(field_modules)
    for key, names in manifest.get("fields", {}).items():
        prod, _, mod = key.partition("/")
        if names and (prod, mod) not in have_fields:
            raise PolicyIntegrityError(org_id, path, f"field rules of {key} are missing (p2)")
    levels = set(approver_levels)
    rows_blocked = set(blocked)
    for key, cfg in manifest.get("approvals", {}).items():
        prod, _, mod = key.partition("/")
        for rule in cfg.get("rules", ()):
            if rule.get("outcome") != "levels":
                continue
            for n in range(1, int(rule.get("levels", 0)) + 1):
                if (prod, mod, rule.get("id"), n) not in levels:
                    raise PolicyIntegrityError(org_id, path, f"approvers of {key} rule "
                                               f"{rule.get('id')} level {n} are missing (p3)")
        if cfg.get("type") != "none":
            for action in cfg.get("blocked_until_approved", ()):
                if (prod, mod, action) not in rows_blocked:
                    raise PolicyIntegrityError(org_id, path, f"{action} on {key} is blocked "
                                               "until approved, but its p4 row is missing")
