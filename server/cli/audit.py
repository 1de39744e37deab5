"""`authz audit verify|query|export|trim`: the trail, read and kept straight from the store.

These talk to the database directly (not to a server) so that an auditor can verify a
trail with no server running, and retention can run from cron. Exit codes: 0 ok,
1 the chain does not hold (verify) or trimming was refused, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from typing import Any

import sqlalchemy as sa

from authz.store.audit import AuditStore, TrimRefused
from authz.store.audit_query import MAX_PAGE, Query
from authz.store.connect import DEFAULT_URL, make_engine


def _common(p: argparse.ArgumentParser, org_required: bool = False) -> None:
    p.add_argument("--db", default=os.environ.get("AUTHZ_DB", DEFAULT_URL),
                   help="store URL (env AUTHZ_DB; default %(default)s)")
    p.add_argument("--org", required=org_required,
                   help="organization id" + ("" if org_required else " (default: every organization)"))


def _when(text: str) -> dt.datetime:
    """ISO 8601; a time without a zone is UTC."""
    try:
        at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=_when, help="from this time (ISO 8601, UTC unless a zone is given)")
    p.add_argument("--until", type=_when, help="before this time")


def register(sub: Any) -> None:
    """Add the `audit` command group to the top-level parser."""
    a = sub.add_parser("audit", help="the audit trail: verify, query, export, retention")
    asub = a.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    asub.required = True
    p = asub.add_parser("verify", help="check each organization's hash chain; name changed or "
                                       "removed entries (exit 1 when one does not hold)")
    _common(p)
    p.set_defaults(func=cmd_verify)
    p = asub.add_parser("query", help="list an organization's entries, a page at a time")
    _common(p, org_required=True)
    p.add_argument("--user", default="", help="CRM user id or e-mail address (as QueryAudit)")
    p.add_argument("--record", default="", help="record id")
    p.add_argument("--decision", default="", help="decision or attribution id")
    _range(p)
    p.add_argument("--limit", type=int, default=100, help=f"entries per page (at most {MAX_PAGE})")
    p.add_argument("--page-token", default="", help="next page token printed by the previous page")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_query)
    p = asub.add_parser("export", help="write entries as JSON lines (hashes included)")
    _common(p)
    _range(p)
    p.add_argument("--out", default="-", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export)
    p = asub.add_parser("ship", help="carry the local audit log of stopped servers to the store "
                                     "(a server does it itself at start; this needs none)")
    _common(p)
    p.add_argument("--log-dir", default=os.environ.get("AUTHZ_AUDIT_LOG_DIR", ""),
                   help="the log folder (env AUTHZ_AUDIT_LOG_DIR; default: as the server's)")
    p.add_argument("--follow", type=int, metavar="PID", default=0,
                   help="keep shipping the log of the server PID as it grows, until it stops "
                        "(how a server with audit_shipper = \"process\" runs its shipper)")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between passes (--follow)")
    p.set_defaults(func=cmd_ship)
    p = asub.add_parser("trim", help="retention: delete entries older than N days (a verified "
                                     "prefix of each chain; verify still works afterwards); "
                                     "a dry run unless --apply")
    _common(p)
    p.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    p.add_argument("--apply", action="store_true",
                   help="delete; without it trim is a dry run that only says what it would delete")
    p.set_defaults(func=cmd_trim)


def _open(args: argparse.Namespace) -> AuditStore | None:
    try:
        return AuditStore(make_engine(args.db))
    except (ValueError, sa.exc.ArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_verify(args: argparse.Namespace) -> int:
    trail = _open(args)
    if trail is None:
        return 2
    try:
        orgs = [args.org] if args.org else trail.org_ids()
        broken = 0
        for org in orgs:
            v = trail.verify(org)
            h = v.head
            extra = (f"; trimmed up to entry {h.checkpoint_seq}" if h.checkpoint_seq else "") + (
                f"; {h.dropped} entries DROPPED by a full queue" if h.dropped else "") + (
                f"; {v.quarantined} entries QUARANTINED (refused by the store, kept apart)"
                if v.quarantined else "")
            if v.ok:
                print(f"{org}: ok, {v.checked} entries, head {h.seq}{extra}")
            else:
                broken += 1
                print(f"{org}: BROKEN, {len(v.breaks)} problem(s){extra}")
                for b in v.breaks:
                    print(f"  {b}")
            for q in v.quarantine:
                print(f"  quarantined: {q}; store said: {q.detail}")
        if not orgs:
            print("no audit entries")
        return 1 if broken else 0
    finally:
        trail.engine.dispose()


def cmd_query(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_PAGE or (args.page_token and not args.page_token.isdigit()):
        print(f"error: --limit must be 1 to {MAX_PAGE}, --page-token as printed", file=sys.stderr)
        return 2
    trail = _open(args)
    if trail is None:
        return 2
    try:
        page = trail.query(Query(args.org, crm_user=_crm_user_id(args), record_id=args.record,
                                 decision_id=args.decision, since=args.since, until=args.until,
                                 after_seq=int(args.page_token or 0), limit=args.limit))
    finally:
        trail.engine.dispose()
    for e in page.entries:
        if args.json:
            print(json.dumps(dataclasses.asdict(e), sort_keys=True))
        else:
            verdict = "ALLOW" if e.allowed else "DENY "
            print(f"{e.seq:>6} {e.at} {e.kind:<9} {verdict} {e.crm_user} as {e.acting_kind}:"
                  f"{e.acting_id or '-'} {e.action} {e.module} {e.record_id or '-'} "
                  f"({e.reason}, {e.mode}, policy {e.policy_revision}, by {e.caller}) {e.decision_id}")
    if page.next_after:
        print(f"next page: --page-token {page.next_after}", file=sys.stderr)
    return 0


def _crm_user_id(args: argparse.Namespace) -> str:
    """The trail holds CRM user ids; an e-mail address is looked up in the directory, as
    the QueryAudit RPC does (unknown addresses match nothing)."""
    if "@" not in args.user or not args.org:
        return str(args.user)
    from authz.store.store import open_store

    store = open_store(args.db)
    try:
        crm = store.snapshot(args.org).crm_user(args.user)
    finally:
        store.close()
    return crm.id if crm is not None else str(args.user)


def cmd_export(args: argparse.Namespace) -> int:
    trail = _open(args)
    if trail is None:
        return 2
    try:
        if args.out == "-":
            n = trail.export(sys.stdout, args.org, args.since, args.until)
        else:
            with open(args.out, "w", encoding="utf-8") as out:
                n = trail.export(out, args.org, args.since, args.until)
    finally:
        trail.engine.dispose()
    print(f"exported {n} entries", file=sys.stderr)
    return 0


def cmd_trim(args: argparse.Namespace) -> int:
    if args.older_than < 0:
        print("error: --older-than must not be negative", file=sys.stderr)
        return 2
    trail = _open(args)
    if trail is None:
        return 2
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.older_than)
    try:
        done = trail.trim(before, args.org, dry_run=not args.apply)
    except TrimRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        trail.engine.dispose()
    verb = "trimmed" if args.apply else "would trim"
    for org, n in sorted(done.items()):
        print(f"{org}: {verb} {n} entries recorded before {before.isoformat()}")
    if not done:
        print("nothing to trim")
    elif not args.apply:
        print("dry run: nothing deleted; run again with --apply to delete them")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    """Ship every segment no living server holds; exit 1 when some could not be."""
    from authz.audit.segment import default_log_dir
    from authz.audit.shipper import follow, ship_orphans

    trail = _open(args)
    if trail is None:
        return 2
    folder = default_log_dir(args.db, args.log_dir)
    if args.follow:
        try:
            follow(trail, folder, args.follow, args.interval)
        finally:
            trail.engine.dispose()
        return 0
    try:
        carrier = ship_orphans(trail, folder, wait=30.0) if folder.is_dir() else None
    finally:
        trail.engine.dispose()
    if carrier is None:
        print(f"no audit log at {folder}")
        return 0
    left = sorted(p.name for p in folder.glob("seg-*.log"))
    print(f"shipped {carrier.written} entries ({carrier.skipped} already in the store, "
          f"{carrier.quarantined} quarantined) from {folder}")
    for name in left:
        print(f"  not shipped (held by a running server, or damaged): {name}")
    return 0 if not left else 1
