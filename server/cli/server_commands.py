"""Transport commands: `authz serve`, `authz check`, `authz directory import`.

Exit codes of `check` are meant for scripts: 0 allowed, 1 denied, 2 the request was
refused (bad argument, unknown organization), 3 no server answered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..process.config import DEFAULT_LISTEN, ENV, LOG_LEVELS, ConfigError
from . import secure

# The client installs as `authz_client`; mypy, run over the source tree, knows it as
# `client` (an editable install's import hook is invisible to it).
if TYPE_CHECKING:
    import client as authz_client
    from client import CheckResult
else:
    import authz_client

SERVER_ENV = "AUTHZ_SERVER"


def register(sub: Any) -> None:
    """Add `serve`, `check` and `directory` to the top-level parser."""
    p = sub.add_parser("serve", help="run the gRPC decision server",
                       description="Run the gRPC decision server. Settings: flags > environment "
                       "(" + ", ".join(ENV.values()) + ") > --config TOML file > defaults.")
    p.add_argument("--listen", help=f"host:port (env AUTHZ_LISTEN; default {DEFAULT_LISTEN})")
    p.add_argument("--db", help="store URL (env AUTHZ_DB; default sqlite:///var/authz.db)")
    p.add_argument("--policy-dir", help="compiled policy folder (env AUTHZ_POLICY_DIR)")
    p.add_argument("--config", type=Path, help="TOML configuration file (env AUTHZ_CONFIG)")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                   help="env AUTHZ_LOG_LEVEL; default INFO")
    p.add_argument("--grace", type=float,
                   help="seconds in-flight calls get on SIGTERM (env AUTHZ_GRACE; default 10)")
    p.add_argument("--workers", type=int,
                   help="server processes sharing the port with SO_REUSEPORT, one store; needs "
                        "a fixed port (env AUTHZ_WORKERS; default 1)")
    p.add_argument("--threads", type=int,
                   help="threads per process for store calls and uncached decisions "
                        "(env AUTHZ_THREADS; default 16)")
    p.add_argument("--audit-mode", choices=("strict", "batched", "off"),
                   help="strict: recorded before the answer leaves; batched: queued, written "
                        "in the background (env AUTHZ_AUDIT_MODE; default batched)")
    p.add_argument("--audit-pipeline", choices=("log", "queue"),
                   help="how audit entries leave the serving path: a local log shipped to the "
                        "store, or an in-memory queue (env AUTHZ_AUDIT_PIPELINE; default log)")
    secure.add_serve_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "check", help="ask a running server one question and print the answer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ask a running server (make serve) whether a CRM user may take an action "
        "on a finance module,\nand print the decision. Exit code: 0 allowed, 1 denied, 2 request "
        "refused, 3 no server answered.",
        epilog="examples:\n"
        "  authz check --org acme-eu --user u-sam --action view --module invoices\n"
        "  authz check --org acme-eu --user u-fiona --action create --module invoices "
        "--total 20000 --write-field discount\n"
        "  authz check --request question.yaml        # CheckRequest fields in YAML or JSON\n"
        "  authz check --request question.yaml --user u-paul   # flags override the file")
    p.add_argument("--server", default=os.environ.get(SERVER_ENV, DEFAULT_LISTEN),
                   help=f"server address (env {SERVER_ENV}; default %(default)s)")
    p.add_argument("--request", type=Path, metavar="FILE",
                   help="read the question from a YAML or JSON file of CheckRequest fields "
                   "(org_id, user, action, module, record: {...}, write_fields: [...]); "
                   "flags override it")
    p.add_argument("--org", default="", help="organization id, e.g. acme-eu (or in --request)")
    p.add_argument("--user", default="", help="CRM user id or e-mail (or in --request)")
    p.add_argument("--action", default="", help="e.g. view, create, approve, email (or in --request)")
    p.add_argument("--module", default="", help="e.g. invoices, estimates (or in --request)")
    p.add_argument("--product", default="", help="books or subscriptions (default: any)")
    for name in ("record-id", "customer-id", "owner", "currency", "status", "created-by",
                 "location"):
        p.add_argument(f"--{name}", default="", help=f"record {name.replace('-', ' ')}")
    p.add_argument("--total", type=float, help="record total")
    p.add_argument("--approval-level", type=int, default=0, help="record's current level")
    p.add_argument("--read-field", action="append", default=[], help="field read (repeatable)")
    p.add_argument("--write-field", action="append", default=[], help="field written (repeatable)")
    p.add_argument("--channel", choices=("crm", "direct"), default="crm")
    p.add_argument("--explain", action="store_true", help="show the matched policy rules")
    p.add_argument("--min-revision", type=int, default=0, help="directory revision to wait for")
    p.add_argument("--deadline", type=float, default=5.0, help="seconds (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    secure.add_client_flags(p)
    p.set_defaults(func=cmd_check, check_parser=p)
    secure.register(sub)  # dev-certs

    d = sub.add_parser("directory", help="manage organization directories in the store")
    dsub = d.add_subparsers(dest="directory_command", metavar="SUBCOMMAND")
    dsub.required = True
    p = dsub.add_parser("import", help="upsert the users of a directory YAML file, checked "
                        "against the organization's compiled policy")
    p.add_argument("--db", help="store URL (env AUTHZ_DB; default sqlite:///var/authz.db)")
    p.add_argument("--config", type=Path, help="TOML configuration file (env AUTHZ_CONFIG)")
    p.add_argument("--policy-dir", type=Path,
                   help="compiled policy (env AUTHZ_POLICY_DIR; default authz/policies/generated)")
    p.add_argument("--replace", action="store_true",
                   help="the directory becomes exactly the file: users not listed are removed")
    p.add_argument("file", type=Path, help="directory file (see authz/directory_file.py)")
    p.set_defaults(func=cmd_directory_import)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..edge import auth
    from ..process import config, run

    try:
        cfg = config.load(
            {"listen": args.listen, "db": args.db, "policy_dir": args.policy_dir,
             "log_level": args.log_level, "grace": args.grace, "workers": args.workers,
             "threads": args.threads,
             "audit_mode": args.audit_mode, "audit_pipeline": args.audit_pipeline,
             **secure.serve_values(args)},
            config_file=args.config)
        auth.check_config(cfg)
        config.check_policy_dir(cfg)
        config.policy_keys(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run.run(cfg)


def cmd_directory_import(args: argparse.Namespace) -> int:
    from authz import directory_file
    from authz.directory_check import DirectoryPolicy
    from authz.engine.engine import PolicySet
    from authz.errors import AuthzError
    from authz.policy import sealkey
    from authz.policy.errors import PolicyError
    from authz.policy.yamlsrc import load

    from ..process import app, config

    try:
        cfg = config.load({"db": args.db, "policy_dir": args.policy_dir},
                          config_file=args.config)
        sealkey.require(config.policy_keys(cfg))  # the policy checked as the server checks it
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        src = load(args.file, str(args.file))
        org_id = directory_file.parse(src).org_id
        try:
            manifest = PolicySet(cfg.policy_dir).get(org_id).manifest
        except AuthzError:
            print(f"error: {src.at(('org',))}: no compiled policy for organization '{org_id}' "
                  f"under {cfg.policy_dir}", file=sys.stderr)
            return 2
        df = directory_file.parse(src, DirectoryPolicy.from_manifest(manifest))
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing imported", file=sys.stderr)
        return 2
    try:
        store = app.open_store(cfg.db)
    except AuthzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        revision = store.import_directory(df.org_id, df.crm_users, df.finance_users,
                                          df.integration_users, replace=args.replace,
                                          integration_quota=manifest.get("integration_user_quota"))
    except AuthzError as exc:
        print(f"error: {args.file}: {exc}; nothing imported", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"{df.org_id}: imported {len(df.crm_users)} CRM, {len(df.finance_users)} finance and "
          f"{len(df.integration_users)} integration users"
          + (" (replacing the directory)" if args.replace else "")
          + f"; directory revision {revision}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .requestfile import RequestFileError, merge

    try:
        args = merge(args, args.check_parser.parse_args([]))
    except RequestFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    q = authz_client.query(args.org, args.user, args.action, args.module, product=args.product,
              record=authz_client.Record(record_id=args.record_id, customer_id=args.customer_id,
                            owner=args.owner, total=args.total, currency=args.currency,
                            status=args.status, approval_level=args.approval_level,
                            created_by=args.created_by, location=args.location),
              read_fields=args.read_field, write_fields=args.write_field,
              channel=args.channel, explain=args.explain, min_revision=args.min_revision)
    with authz_client.AuthzClient(args.server, deadline=args.deadline,
                                  **secure.client_kwargs(args)) as client:
        try:
            result: CheckResult = client.check_query(q)
        except authz_client.AuthzRpcError as exc:
            print(f"error: {exc.code.name}: {exc.message}", file=sys.stderr)
            for v in exc.violations:
                print(f"  field {v.field}: {v.description}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(asdict(result), default=str, indent=2))
    else:
        print(format_result(result))
    if not result.from_server:
        from .tlsprobe import hint

        print(hint(args.server, used_tls=args.ca is not None)
              or f"no authz server answered at {args.server} within {args.deadline}s: start "
              "one with `make serve`, or point --server (env AUTHZ_SERVER) at one",
              file=sys.stderr)
        return 3
    return 0 if result.allowed else 1


def format_result(r: CheckResult) -> str:
    """A decision for a person at a terminal."""
    lines = [f"decision:  {'ALLOW' if r.allowed else 'DENY'} ({r.reason})", f"message:   {r.message}"]
    i = r.identity
    if i.kind != "none":
        ids = ", ".join(f"{k}={v}" for k, v in (
            ("books", i.books_user_id), ("subscriptions", i.subscriptions_user_id),
            ("integration", i.integration_user_id)) if v)
        lines.append(f"identity:  {i.kind} {i.display_name} <{i.email}>"
                     + (f" [{ids}]" if ids else "") + (f" roles={','.join(i.roles)}" if i.roles else ""))
    else:
        lines.append("identity:  none")
    if r.mode:
        lines.append(f"mode:      {r.mode}")
    if r.hidden_fields:
        lines.append(f"hidden:    {', '.join(r.hidden_fields)}")
    if r.read_only_fields:
        lines.append(f"read-only: {', '.join(r.read_only_fields)}")
    if r.approval is not None:
        a = r.approval
        who = ", ".join((*a.approver_roles, *a.approver_users)) or "-"
        lines.append(f"approval:  {a.outcome} rule={a.rule or '-'} level {a.level}/{a.levels} "
                     f"approvers: {who}")
    if r.blocked_until_approved:
        lines.append("blocked:   until the record is approved")
    for rule in r.matched_rules:
        lines.append(f"rule:      {rule}")
    if r.from_server:
        lines.append(f"revisions: policy {r.policy_revision}, directory {r.directory_revision}")
        lines.append(f"decision:  {r.decision_id}")
    return "\n".join(lines)
