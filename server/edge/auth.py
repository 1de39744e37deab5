"""Who may call: mTLS and bearer-token authentication, scopes and organizations.

A calling service proves who it is with a client certificate (mTLS: its common name or
a DNS name in it is listed in the callers file) or, when it cannot hold a certificate,
with a bearer token (`authorization: Bearer ...`; the file keeps only SHA-256 hashes,
so a leaked file does not leak tokens). Each caller has scopes (what kind of RPC) and
organizations (whose data); the gate in `server/edge/gate.py` turns a failure into
UNAUTHENTICATED (who are you?) or PERMISSION_DENIED (not this, not for that org).

Without a callers file the server runs open, as `make serve` does on loopback; the
configuration check refuses that off loopback unless `allow_insecure` says so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ..process.config import Config, ConfigError
from .callers import ANONYMOUS, Caller

SCOPES = ("check", "attribute", "migrate", "directory", "audit")
_METHOD_SCOPES = {"Check": "check", "CheckBatch": "check", "ListFilter": "check",
                  "Attribute": "attribute",
                  "ImportDirectory": "directory"}


def scope_for(method: str) -> str | None:
    """The scope an RPC needs ("/authz.v1.AuthzService/Check" -> "check").

    Methods added later are matched by name (Migrate*, *Migration*, *Audit*, *Usage*); a
    method no rule names gets None, which the gate refuses: new RPCs fail closed."""
    name = method.rsplit("/", 1)[-1]
    if name in _METHOD_SCOPES:
        return _METHOD_SCOPES[name]
    if "Migrat" in name:
        return "migrate"
    if "Audit" in name or "Usage" in name:
        return "audit"
    return None


def hash_token(token: str) -> str:
    """How a bearer token is written in the callers file."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Unauthenticated(Exception):
    """The call carries no credential we accept (gRPC UNAUTHENTICATED)."""


class Forbidden(Exception):
    """The caller is known but may not do this (gRPC PERMISSION_DENIED)."""


@dataclass(frozen=True, slots=True)
class Callers:
    """The callers file, indexed by certificate name and by token hash."""

    by_cert: Mapping[str, Caller]
    by_token: Mapping[str, Caller]

    @classmethod
    def load(cls, path: Path) -> Callers:
        """Parse and check the whole file; any problem raises ConfigError naming the entry."""
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("callers"), list):
            raise ConfigError(f"{path}: expected a top-level 'callers' list")
        by_cert: dict[str, Caller] = {}
        by_token: dict[str, Caller] = {}
        for i, entry in enumerate(data["callers"]):
            at = f"{path}: callers[{i}]"
            caller, certs, tokens = _entry(entry, at)
            for name in certs:
                if name in by_cert:
                    raise ConfigError(f"{at}: certificate name '{name}' listed twice")
                by_cert[name] = caller
            for h in tokens:
                if h in by_token:
                    raise ConfigError(f"{at}: token listed twice")
                by_token[h] = caller
        return cls(by_cert, by_token)

    def from_cert(self, names: Iterable[str]) -> Caller | None:
        """The one caller a certificate's names (common name, DNS names) map to. Names
        that map to two callers are refused: taking either would let a certificate
        issued for one service act with another's scopes and organizations."""
        found = {c.name: c for c in (self.by_cert.get(n) for n in names) if c is not None}
        if len(found) > 1:
            raise Unauthenticated("client certificate names map to more than one caller ("
                                  + ", ".join(sorted(found)) + "): it must name exactly one")
        return next(iter(found.values()), None)

    def from_token(self, token: str) -> Caller | None:
        # Looked up by its SHA-256: timing can only reveal bits of a hash of the token.
        return self.by_token.get(hash_token(token))


def _entry(entry: Any, at: str) -> tuple[Caller, list[str], list[str]]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: expected a mapping")
    unknown = set(entry) - {"name", "scopes", "orgs", "certs", "tokens"}
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{at}: name: required")

    def strings(key: str) -> list[str]:
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{at} ({name}): {key}: expected a list of non-empty strings")
        return value

    scopes, orgs, certs, tokens = (strings(k) for k in ("scopes", "orgs", "certs", "tokens"))
    bad = [s for s in scopes if s not in SCOPES and s != "*"]
    if bad:
        raise ConfigError(f"{at} ({name}): unknown scope(s) {', '.join(bad)}; expected "
                          + ", ".join(SCOPES))
    if not orgs:
        raise ConfigError(f"{at} ({name}): orgs: list the organizations, or '*' for all")
    if not certs and not tokens:
        raise ConfigError(f"{at} ({name}): give certs (client certificate names) or tokens")
    for t in tokens:
        if not t.startswith("sha256:") or len(t) != 71:
            raise ConfigError(f"{at} ({name}): tokens are stored hashed: 'sha256:<64 hex>' "
                              "(see `authz dev-certs` or security.hash_token)")
    return (Caller(name, authenticated=True, scopes=frozenset(scopes), orgs=frozenset(orgs)),
            certs, tokens)


class Authenticator:
    """Turns a call's transport and metadata into a Caller; swappable callers for reloads."""

    def __init__(self, callers: Callers | None) -> None:
        self.callers = callers  # None: authentication off (loopback development)

    @property
    def enabled(self) -> bool:
        return self.callers is not None

    def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        names = _cert_names(context.auth_context()) if self.callers is not None else []
        return self.identify(names, metadata)

    def identify(self, names: list[str], metadata: Mapping[str, str]) -> Caller:
        """The caller from a verified client certificate's names and the request's headers
        (lower-case keys): the one rule for every transport (gRPC metadata, HTTP headers)."""
        callers = self.callers
        if callers is None:
            name = metadata.get("x-authz-caller", "")[:64]
            return Caller(name) if name else ANONYMOUS
        if names:
            caller = callers.from_cert(names)
            if caller is None:
                raise Unauthenticated(f"client certificate {names[0]!r} is not a known caller")
            return caller
        auth = metadata.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            caller = callers.from_token(token.strip())
            if caller is None:
                raise Unauthenticated("bearer token not recognised")
            return caller
        raise Unauthenticated("no credentials: present a client certificate or a bearer token")


def _cert_names(auth: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The verified peer certificate's common name and DNS names (empty: no certificate)."""
    out: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        out.extend(v.decode(errors="replace") for v in auth.get(key, ()))
    return out


def authorize(caller: Caller, method: str, orgs: Iterable[str]) -> None:
    """Raise Forbidden unless `caller` has the method's scope for every organization named."""
    scope = scope_for(method)
    if scope is None:
        raise Forbidden(f"{method} is not open to callers (no scope maps to it)")
    if not caller.may(scope):
        raise Forbidden(f"caller '{caller.name}' lacks scope '{scope}'")
    for org in orgs:
        if org and not caller.may(scope, org):
            raise Forbidden(f"caller '{caller.name}' may not act for organization '{org[:128]}'")


# --- transport ----------------------------------------------------------------------

def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(cfg: Config) -> None:
    """Refuse, at start, combinations that would expose the server by accident."""
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("tls_cert and tls_key go together")
    if cfg.tls_client_ca and not cfg.tls_cert:
        raise ConfigError("tls_client_ca (mTLS) needs tls_cert and tls_key")
    if cfg.token_listen and not cfg.tls_cert:
        raise ConfigError("token_listen needs tls_cert and tls_key")
    if cfg.token_listen and not cfg.callers_file:
        raise ConfigError("token_listen needs callers_file (the tokens it accepts)")
    for name, listen in (("listen", cfg.listen), ("http_listen", cfg.http_listen)):
        if not listen or cfg.allow_insecure or is_loopback(listen):
            continue
        if not cfg.tls_cert:
            raise ConfigError(f"{name} {listen} is not loopback: set tls_cert and tls_key "
                              "(or allow_insecure, e.g. behind a TLS-terminating proxy)")
        if not cfg.callers_file:
            raise ConfigError(f"{name} {listen} is not loopback: set callers_file so callers "
                              "authenticate (or allow_insecure)")
    check_metrics(cfg)


def check_metrics(cfg: Config) -> None:
    """/metrics names organizations and callers' traffic: off loopback it needs TLS (it is
    then served over HTTPS with the server's certificate) or an explicit allow_insecure."""
    if (cfg.metrics_listen and not is_loopback(cfg.metrics_listen) and not cfg.tls_cert
            and not cfg.allow_insecure):
        raise ConfigError(f"metrics_listen {cfg.metrics_listen} is not loopback: set tls_cert "
                          "and tls_key (metrics are then served over HTTPS) or allow_insecure")


def _creds(cfg: Config, client_ca: bool) -> grpc.ServerCredentials:
    try:
        key, chain = Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes()
        ca = Path(cfg.tls_client_ca).read_bytes() if client_ca else None
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: cannot read: {exc.strerror}") from None
    # gRPC Python cannot *request* a client certificate without requiring it, so a
    # port either demands mTLS or takes none (bearer tokens); see `token_listen`.
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca,
                                       require_client_auth=client_ca)


def listen_ports(cfg: Config) -> list[tuple[str, grpc.ServerCredentials | None]]:
    """(address, credentials) to bind: the main port, and the token port if configured.

    The main port is plaintext (no tls_cert), TLS (tokens), or mTLS (tls_client_ca). With
    mTLS on, `token_listen` adds a TLS port without client certificates for callers that
    can only present a bearer token."""
    if not cfg.tls_cert:
        return [(cfg.listen, None)]
    ports: list[tuple[str, grpc.ServerCredentials | None]] = [
        (cfg.listen, _creds(cfg, bool(cfg.tls_client_ca)))]
    if cfg.token_listen:
        ports.append((cfg.token_listen, _creds(cfg, False)))
    return ports


def http_ssl_context(cfg: Config) -> ssl.SSLContext | None:
    """TLS for the AuthZEN HTTP port, with the gRPC port's certificate. With
    `tls_client_ca`, client certificates are asked for and verified but not required
    (Python's ssl can, gRPC Python cannot): a caller without one sends a bearer token."""
    if not cfg.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_client_ca:
            ctx.load_verify_locations(cfg.tls_client_ca)
    except OSError as exc:
        raise ConfigError(f"{exc.filename or cfg.tls_cert}: cannot read: {exc.strerror}") from None
    if cfg.tls_client_ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def http_cert_names(transport: Any) -> list[str]:
    """A verified client certificate's common name and DNS names on an HTTPS connection
    (empty: none presented), as `_cert_names` reads them from gRPC's auth context."""
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return []
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    names.extend(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")
    return names
