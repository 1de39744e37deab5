"""Why `authz check` got no answer: nothing listens, or the port speaks TLS and the call
was plaintext (or the reverse). gRPC reports all three as UNAVAILABLE; one TCP connection
and a TLS handshake tell them apart, so the message can say what to change."""

from __future__ import annotations

import socket
import ssl
from typing import Literal

Speaks = Literal["tls", "plaintext", "nothing"]


def probe(address: str, timeout: float = 2.0) -> Speaks:
    """What listens at host:port: a TLS server, something that is not TLS, or nothing."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError):
        return "nothing"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only asking whether TLS is spoken, not trusting it
    ctx.set_alpn_protocols(["h2"])
    try:
        with ctx.wrap_socket(sock, server_hostname=host):
            return "tls"
    except ssl.SSLError as exc:
        # An alert from the peer (e.g. "certificate required" from an mTLS port) is TLS
        # too; a plaintext HTTP/2 server answers with bytes that are no TLS record.
        return "tls" if "ALERT" in (exc.reason or "") else "plaintext"
    except OSError:
        return "plaintext"  # accepted, then closed on our handshake
    finally:
        sock.close()


def hint(address: str, used_tls: bool) -> str | None:
    """A sentence naming the mismatch, or None when there is none to name."""
    found = probe(address)
    if found == "tls" and not used_tls:
        return (f"the server at {address} speaks TLS and this call was plaintext: pass --ca "
                "CA.pem (with --cert/--key on an mTLS port, or --token-file on the token port)")
    if found == "plaintext" and used_tls:
        return (f"the server at {address} does not speak TLS: drop --ca/--cert/--key, or "
                "point --server at its TLS port")
    return None
