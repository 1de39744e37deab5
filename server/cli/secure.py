"""Command-line flags for security and operations, kept out of commands.py.

`authz serve` gets the TLS, callers, reload, health and metrics flags; `authz check`
gets the client side (CA, client certificate, bearer token); `authz dev-certs` is
registered from devcerts.py. Every serve flag maps onto a Config field of the same name,
so flags > environment > file precedence holds for them as for the others.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

TOKEN_ENV = "AUTHZ_TOKEN"
_SERVE = {
    "tls_cert": (str, "server certificate chain, PEM (turns TLS on)"),
    "tls_key": (str, "server private key, PEM"),
    "tls_client_ca": (str, "CA of client certificates: the port then requires mTLS"),
    "token_listen": (str, "extra host:port, TLS without client certificates, for bearer tokens"),
    "callers": (str, "callers file (scopes, organizations, certificate names, token hashes)"),
    "policy_key_file": (str, "policy key file(s), comma-separated: every seal must then be "
                              "signed by one of them (authz policy compile --policy-key-file)"),
    "max_message_bytes": (int, "largest request accepted (default 16 MiB)"),
    "max_connections": (int, "open client connections per port (default 10000)"),
    "max_streams": (int, "concurrent calls on one connection (default 100)"),
    "max_calls": (int, "calls in progress, beyond: RESOURCE_EXHAUSTED (default 10000)"),
    "max_inflight_bytes": (int, "request bytes held by calls in progress, beyond: "
                                "RESOURCE_EXHAUSTED (default 256 MiB)"),
    "connection_idle": (float, "seconds before an idle connection is closed (default 300)"),
    "connection_age": (float, "seconds before a connection must reconnect (default 3600)"),
    "reload_interval": (float, "seconds between policy change polls; 0: SIGHUP only (default 2)"),
    "health_interval": (float, "seconds between database probes; 0: off (default 1)"),
    "metrics_listen": (str, "host:port for Prometheus /metrics (default: off)"),
    "http_listen": (str, "host:port for the AuthZEN API over HTTP(S) (default: off)"),
    "http_base_url": (str, "public base URL of the AuthZEN API, as discovery names it "
                           "(default: from each request)"),
}


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    for name, (kind, text) in _SERVE.items():
        env = "AUTHZ_CALLERS_FILE" if name == "callers" else "AUTHZ_" + name.upper()
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"{text} (env {env})")
    p.add_argument("--allow-insecure", action="store_true", default=None,
                   help="allow plaintext or unauthenticated calls on a non-loopback address")


def serve_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as Config field names (None: not given)."""
    out = {("callers_file" if n == "callers" else n): getattr(args, n) for n in _SERVE}
    out["allow_insecure"] = args.allow_insecure
    return out


def add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca", type=Path, help="CA certificate to verify the server (turns TLS on)")
    p.add_argument("--cert", type=Path, help="client certificate (mTLS)")
    p.add_argument("--key", type=Path, help="client private key (mTLS)")
    p.add_argument("--token-file", type=Path,
                   help=f"file holding a bearer token (or env {TOKEN_ENV})")


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    token = os.environ.get(TOKEN_ENV) or None
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    return {"ca": args.ca, "cert": args.cert, "key": args.key, "token": token}


def register(sub: Any) -> None:
    from . import devcerts

    devcerts.register(sub)
