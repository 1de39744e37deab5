"""`authz dev-certs DIR`: a throw-away CA, server and client certificates, and a callers file.

For trying security out on one machine (and for the tests), not for production: keys
are written unencrypted and the CA key sits next to the certificates. It shells out to
the `openssl` CLI so that the server needs no cryptography dependency of its own.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..edge.auth import hash_token

DAYS = 30


@dataclass(frozen=True, slots=True)
class DevClient:
    """A calling service to make credentials for: a certificate, or a bearer token."""

    name: str
    scopes: tuple[str, ...]
    orgs: tuple[str, ...]
    token: bool = False  # a token-only caller gets no certificate


DEFAULT_CLIENTS = (
    DevClient("crm", ("check", "attribute"), ("*",)),
    DevClient("ops", ("check", "attribute", "migrate", "directory", "audit"), ("*",)),
    DevClient("batch-job", ("check", "directory"), ("acme-eu",), token=True),
)


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {out.stderr.strip()}")


def _leaf(out: Path, name: str, cn: str, ext: str) -> None:
    """A P-256 key and a certificate for `cn` signed by the dev CA."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=out)
    (out / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", str(secrets.randbits(63)), "-days", str(DAYS), "-sha256",
             "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=out)
    (out / f"{name}.csr").unlink()
    (out / f"{name}.ext").unlink()
    (out / f"{name}.key").chmod(0o600)


def make_dev_certs(out: Path, clients: tuple[DevClient, ...] = DEFAULT_CLIENTS,
                   hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> dict[str, str]:
    """Write ca.pem, server.pem/key, <client>.pem/key, <client>.token and callers.yaml.

    Returns the bearer tokens made, by caller name (they are stored hashed in callers.yaml).
    """
    out.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", str(DAYS), "-sha256",
             "-subj", "/CN=authz dev CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=out)
    (out / "ca.key").chmod(0o600)
    sans = ",".join(("IP:" if h.replace(".", "").isdigit() or ":" in h else "DNS:") + h
                    for h in hosts)
    _leaf(out, "server", hosts[0], f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
                                   "basicConstraints=CA:FALSE\n")
    tokens: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for c in clients:
        entry: dict[str, Any] = {"name": c.name, "scopes": list(c.scopes), "orgs": list(c.orgs)}
        if c.token:
            tokens[c.name] = token = secrets.token_urlsafe(32)
            (out / f"{c.name}.token").write_text(token + "\n")
            (out / f"{c.name}.token").chmod(0o600)
            entry["tokens"] = [hash_token(token)]
        else:
            _leaf(out, c.name, c.name, f"subjectAltName=DNS:{c.name}\nextendedKeyUsage=clientAuth\n"
                                       "basicConstraints=CA:FALSE\n")
            entry["certs"] = [c.name]
        entries.append(entry)
    import yaml

    (out / "callers.yaml").write_text(
        "# Calling services: scopes, organizations, and how each proves who it is\n"
        "# (client certificate names, or SHA-256 hashes of bearer tokens).\n"
        + yaml.safe_dump({"callers": entries}, sort_keys=False))
    return tokens


def register(sub: Any) -> None:
    p = sub.add_parser("dev-certs", help="make a local CA, server and client certificates",
                       description="Write a development CA, a server certificate for localhost, "
                       "client certificates, a bearer token and a callers file into DIR. "
                       "For trying mTLS and tokens locally; never use these in production.")
    p.add_argument("dir", type=Path, help="output folder (created)")
    p.add_argument("--host", action="append", default=[],
                   help="server name or IP for the certificate (repeatable; default localhost, "
                   "127.0.0.1)")
    p.set_defaults(func=cmd_dev_certs)


def cmd_dev_certs(args: argparse.Namespace) -> int:
    hosts = tuple(args.host) or ("localhost", "127.0.0.1")
    try:
        make_dev_certs(args.dir, hosts=hosts)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = args.dir
    print(f"wrote {d}/ca.pem, server.pem/.key, crm.pem/.key, ops.pem/.key, batch-job.token, "
          f"callers.yaml\n\nserve with:\n  authz serve --tls-cert {d}/server.pem --tls-key "
          f"{d}/server.key --tls-client-ca {d}/ca.pem --callers {d}/callers.yaml\n"
          f"check with:\n  authz check --server localhost:50051 --ca {d}/ca.pem --cert {d}/crm.pem "
          f"--key {d}/crm.key --org acme-eu --user u-sam --action view --module invoices")
    return 0
