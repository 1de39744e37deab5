"""Server configuration: flags > environment (AUTHZ_*) > TOML file > defaults.

One resolved, immutable `Config` is built at start-up so that the rest of the server
never reads the environment itself, and a bad value is reported once, naming where it
came from, before anything listens.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from authz.engine.engine import DEFAULT_POLICY_DIR
from authz.policy import sealkey

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DB = "sqlite:///var/authz.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AUDIT_CHOICES = {"audit_mode": ("strict", "batched", "off"), "audit_when_full": ("block", "drop"),
                 "audit_pipeline": ("log", "queue"), "audit_shipper": ("process", "thread")}


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names its source."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `authz serve` needs to start."""

    listen: str = DEFAULT_LISTEN  # host:port; port 0 picks a free port
    db: str = DEFAULT_DB  # SQLAlchemy URL of the store
    policy_dir: Path = DEFAULT_POLICY_DIR  # compiled policy (generated/)
    # Policy key files (authz.policy.sealkey): when given, every seal must be signed by one
    # of them (a comma-separated list in flags and env, a list or text in the file).
    policy_key_file: tuple[str, ...] = ()
    log_level: str = "INFO"
    grace: float = 10.0  # seconds in-flight calls get to finish on SIGTERM/SIGINT
    workers: int = 1  # server processes sharing the listen port (SO_REUSEPORT), one store
    threads: int = 16  # per process: threads running store calls and uncached decisions
    decide_inline: bool = True  # decide on the event loop when policy and directory are cached
    warm: bool = True  # load every organization's policy before reporting SERVING
    max_batch: int = 1000  # CheckBatch item limit (documented in the proto)
    # The audit trail (authz.audit.writer): strict waits for the commit, batched queues.
    audit_mode: str = "batched"  # strict | batched | off
    audit_queue: int = 10_000  # writer queue bound, in entries
    audit_when_full: str = "block"  # block | drop (drops are counted per organization)
    audit_flush_interval: float = 0.05  # seconds between batched writes
    audit_wait: float = 10.0  # longest wait on the trail for a call without a deadline
    # How entries leave the serving path: "log" (a local append-only log, group commit,
    # shipped to the store by a shipper thread) or "queue" (an in-memory queue written
    # by a writer thread). README "The audit trail".
    audit_pipeline: str = "log"
    audit_log_dir: str = ""  # the local log's folder; empty: beside an SQLite file, else var/
    audit_shipper: str = "process"  # log pipeline: ship from a process of its own, or a thread
    audit_ship_interval: float = 0.25  # log pipeline: seconds between shipping passes
    # Batched: the longest an answered entry is at risk. Log pipeline: from a lost machine
    # (longest time between fsyncs); queue pipeline: from a killed process (longest wait
    # in the queue; callers wait past it, or drops count, as audit_when_full says).
    audit_max_lag: float = 1.0
    # Security and operations (server/edge/auth.py, reload.py, healthwatch.py, metrics.py);
    # empty paths mean "off", so `make serve` stays plaintext on loopback.
    tls_cert: str = ""  # server certificate chain (PEM); with tls_key turns TLS on
    tls_key: str = ""  # server private key (PEM)
    tls_client_ca: str = ""  # CA that signs client certificates: the listen port needs mTLS
    token_listen: str = ""  # extra TLS port without client certificates (bearer-token callers)
    callers_file: str = ""  # YAML of calling services (scopes, orgs, certs, token hashes)
    allow_insecure: bool = False  # permit plaintext or no authentication off loopback
    max_message_bytes: int = 16 * 1024 * 1024  # largest request accepted
    # Resource limits (server/edge/resources.py); over one: RESOURCE_EXHAUSTED, never OOM/EMFILE.
    max_connections: int = 10_000  # open client connections per listening port
    max_streams: int = 100  # concurrent calls on one connection (HTTP/2 streams)
    max_calls: int = 10_000  # calls in progress in the process, watch streams included
    max_inflight_bytes: int = 256 * 1024 * 1024  # request bytes held by calls in progress
    connection_idle: float = 300.0  # seconds before an idle connection is closed
    connection_age: float = 3600.0  # seconds before a connection is asked to reconnect
    reload_interval: float = 2.0  # seconds between policy/callers change polls; 0: SIGHUP only
    health_interval: float = 1.0  # seconds between database reachability probes; 0: off
    metrics_listen: str = ""  # host:port for Prometheus /metrics; empty: off
    # AuthZEN Authorization API 1.0 over HTTP(S) (server/api/authzen/http.py); empty: off.
    http_listen: str = ""  # host:port; TLS and callers as the gRPC port (tls_*, callers_file)
    http_base_url: str = ""  # the PDP identifier discovery names; empty: from the request


# name -> environment variable; the file uses the names themselves as keys.
ENV = {f.name: "AUTHZ_" + f.name.upper() for f in fields(Config)}
CONFIG_ENV = "AUTHZ_CONFIG"


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a raw value (text from env/flags, or a TOML value) into the field's type."""
    try:
        if name == "policy_dir":
            return Path(str(value))
        if name == "policy_key_file":
            items = value if isinstance(value, list) else str(value).split(",")
            paths = tuple(str(p).strip() for p in items if str(p).strip())
            if not paths:
                raise ValueError("expected one or more key file paths")
            return paths
        if name in AUDIT_CHOICES:
            text = str(value).strip().lower()
            if text not in AUDIT_CHOICES[name]:
                raise ValueError("expected one of " + ", ".join(AUDIT_CHOICES[name]))
            return text
        if name == "audit_ship_interval":
            every = float(value)
            if not 0 < every <= 60:
                raise ValueError("must be more than 0 and at most 60 seconds")
            return every
        if name == "audit_max_lag":
            sync = float(value)
            if not 0 < sync <= 60:
                raise ValueError("must be more than 0 and at most 60 seconds")
            return sync
        if name == "audit_wait":
            wait = float(value)
            if not 0 < wait <= 600:
                raise ValueError("must be more than 0 and at most 600 seconds")
            return wait
        if name == "audit_flush_interval":
            interval = float(value)
            if not 0 < interval <= 60:
                raise ValueError("must be more than 0 and at most 60 seconds")
            return interval
        if name == "audit_queue":
            if isinstance(value, bool) or int(value) < 1:
                raise ValueError("expected an integer, at least 1")
            return int(value)
        if name in ("grace", "reload_interval", "health_interval", "connection_idle",
                    "connection_age"):
            out: Any = float(value)
            if out < 0:
                raise ValueError("must not be negative")
            return out
        if name in ("workers", "threads", "max_batch", "max_message_bytes", "max_connections",
                    "max_streams", "max_calls", "max_inflight_bytes"):
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            out = int(value)
            if out < 1:
                raise ValueError("must be at least 1")
            return out
        if name in ("warm", "allow_insecure", "decide_inline"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError("expected true or false")
            return text in ("1", "true", "yes")
        if name == "log_level":
            level = str(value).upper()
            if level not in LOG_LEVELS:
                raise ValueError("expected one of " + ", ".join(LOG_LEVELS))
            return level
        if not isinstance(value, str) or not value:
            raise ValueError("expected non-empty text")
        return value
    except ValueError as exc:
        raise ConfigError(f"{source}: {name}: {exc} (found {value!r})") from None


def check_policy_dir(cfg: Config) -> None:
    """The compiled policy folder must exist: an installed server ships no example
    organizations, so without one configured there is nothing to serve."""
    if not (cfg.policy_dir / "model.conf").is_file():
        raise ConfigError(
            f"policy_dir: no compiled policy in {cfg.policy_dir} (model.conf missing): set "
            "--policy-dir, AUTHZ_POLICY_DIR or policy_dir in the config file to the folder "
            "`authz policy compile` writes (in the repository: authz/policies/generated)")


def policy_keys(cfg: Config) -> tuple[sealkey.PolicyKey, ...]:
    """The policy keys configured (read now: a bad key file stops the start, named)."""
    try:
        return sealkey.read_keys(cfg.policy_key_file)
    except sealkey.KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def read_file(path: Path) -> dict[str, Any]:
    """Values from a TOML file; keys are Config field names, at top level or under [server]."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    server = data.pop("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"{path}: [server] must be a table")
    data.update(server)
    known = set(ENV)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; expected "
                          + ", ".join(sorted(known)))
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}


def load(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
         config_file: Path | None = None) -> Config:
    """Resolve the configuration; `flags` holds only what was given on the command line."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    if path is not None:
        values.update(read_file(path))
    for name, var in ENV.items():
        if env.get(var):
            values[name] = _coerce(name, env[var], f"environment {var}")
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return Config(**values)
