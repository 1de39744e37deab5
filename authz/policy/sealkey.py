"""Keyed seals: an HMAC-SHA256 over a seal's content, so that a server holding the release
pipeline's key can tell a policy that pipeline compiled from one re-sealed by whoever can
write the policy folder (the digests alone only prove the files agree with each other).

A key file holds one secret (at least 32 bytes of text, e.g. `openssl rand -hex 32`), and
must not be readable by group or others (refused, as ssh refuses a private key). Its key
id is a fingerprint derived from the secret (never the secret), written into each seal, so
that keys can rotate: a server accepts a seal signed by any of the keys it was given.

The requirement is process-wide (`require`), set once at start: every path that loads an
organization (start, hot reload, first use, the CLI) goes through `integrity.verify`, which
reads it, so that no loading path can forget to check the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_SECRET = 32  # bytes of key-file text
MAX_KEY_FILE = 4096  # a secret is a line of text; a larger file is not a key file
MAC_FIELD = "mac"
_ID_LABEL = b"authz policy seal key id"
_MAC_LABEL = b"authz policy seal v1\n"


class KeyFileError(Exception):
    """A policy key file cannot be used; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """One secret and its public key id; the secret never appears in a repr or a log."""

    key_id: str
    path: str
    secret: bytes = field(repr=False)


def read_key(path: Path) -> PolicyKey:
    """A key file's secret; refused when missing, not a regular file, owned by another
    user than this process's or root, open to group or others, too short or too large.
    Opened without blocking: a FIFO (or a device) given as the key file is refused, where
    a plain open would wait for a writer for ever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise KeyFileError(f"policy key file {path}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"policy key file {path}: not a regular file")
        if st.st_uid not in (os.geteuid(), 0):
            raise KeyFileError(f"policy key file {path}: owned by uid {st.st_uid}, not by this "
                               f"process's user ({os.geteuid()}) or root: its owner may read "
                               "or replace the secret")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(f"policy key file {path}: permissions {mode:04o} are too open "
                               f"(group or others may read it); run `chmod 600 {path}`")
        if st.st_size > MAX_KEY_FILE:
            raise KeyFileError(f"policy key file {path}: {st.st_size} bytes, a key file holds "
                               f"one secret of at most {MAX_KEY_FILE} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            secret = f.read(MAX_KEY_FILE + 1).strip()
    finally:
        os.close(fd)
    if len(secret) < MIN_SECRET:
        raise KeyFileError(f"policy key file {path}: the secret is {len(secret)} bytes, at "
                           f"least {MIN_SECRET} are needed (e.g. `openssl rand -hex 32`)")
    key_id = hmac.new(secret, _ID_LABEL, hashlib.sha256).hexdigest()[:16]
    return PolicyKey(key_id, str(path), secret)


def read_keys(paths: Iterable[str | Path]) -> tuple[PolicyKey, ...]:
    """Every key file given, in order (the first signs, all verify)."""
    return tuple(read_key(Path(p)) for p in paths)


_required: tuple[PolicyKey, ...] = ()


def require(keys: Iterable[PolicyKey]) -> None:
    """From now on, in this process, every load refuses a seal not signed by one of
    `keys` (none: seals need no signature, as before keys existed)."""
    global _required
    _required = tuple(keys)


def required() -> tuple[PolicyKey, ...]:
    return _required


def _mac(secret: bytes, sealed: Mapping[str, Any]) -> str:
    """The MAC of a seal's canonical content (every field but the MAC itself)."""
    body = {k: v for k, v in sealed.items() if k != MAC_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(secret, _MAC_LABEL + canonical.encode(), hashlib.sha256).hexdigest()


def sign(seal: bytes, key: PolicyKey) -> bytes:
    """A seal (as `integrity.seal` writes it) with its MAC under `key` added."""
    sealed = json.loads(seal)
    sealed[MAC_FIELD] = {"key_id": key.key_id, "hmac_sha256": _mac(key.secret, sealed)}
    return (json.dumps(sealed, indent=2) + "\n").encode()


def signer(sealed: Mapping[str, Any]) -> str:
    """The key id a seal says it was signed with ("" when unsigned or unreadable)."""
    mac = sealed.get(MAC_FIELD)
    key_id = mac.get("key_id") if isinstance(mac, dict) else None
    return key_id if isinstance(key_id, str) else ""


def check(sealed: Mapping[str, Any], keys: tuple[PolicyKey, ...]) -> str | None:
    """Why a seal's signature does not satisfy `keys` (None: it does, or no key is
    required). The comparison takes the same time whatever the MAC's bytes."""
    if not keys:
        return None
    ids = ", ".join(k.key_id for k in keys)
    mac = sealed.get(MAC_FIELD)
    if mac is None:
        return (f"not signed, but a seal signed with a policy key is required (key id "
                f"{ids}): compile with --policy-key-file")
    given = mac.get("hmac_sha256") if isinstance(mac, dict) else None
    if not isinstance(given, str):
        return "signature unreadable (edited)"
    key_id = signer(sealed)
    matching = [k for k in keys if k.key_id == key_id]
    if not matching:
        return f"signed with key id {key_id or '?'}, not one of the keys given ({ids})"
    if not hmac.compare_digest(given.encode(), _mac(matching[0].secret, sealed).encode()):
        return (f"signature does not match key id {key_id} (the seal was edited or signed "
                "by someone without the key)")
    return None
