"""Channels and credentials: plaintext, TLS, mTLS, and bearer tokens.

A service with a client certificate uses mTLS (`ca`, `cert`, `key`); one that cannot
hold a certificate sends a bearer `token` over TLS (`ca` only). Plaintext is for
loopback development. The token travels as call metadata rather than gRPC call
credentials, because gRPC refuses those on a plaintext channel, and loopback-with-token
is how the tests and `make serve` with a callers file run.
"""

from __future__ import annotations

from pathlib import Path

import grpc

PathOrBytes = str | Path | bytes


def _read(value: PathOrBytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def credentials(ca: PathOrBytes | None = None, cert: PathOrBytes | None = None,
                key: PathOrBytes | None = None) -> grpc.ChannelCredentials | None:
    """TLS credentials when a CA is given (and a client certificate with cert+key)."""
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both cert and key")
    return grpc.ssl_channel_credentials(_read(ca), _read(key), _read(cert))


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the bearer token, if any."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def sync_channel(target: str, creds: grpc.ChannelCredentials | None) -> grpc.Channel:
    return grpc.secure_channel(target, creds) if creds is not None else grpc.insecure_channel(target)


def aio_channel(target: str, creds: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    return (grpc.aio.secure_channel(target, creds) if creds is not None
            else grpc.aio.insecure_channel(target))
