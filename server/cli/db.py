"""`authz db upgrade|current`: schema migrations, run once per deploy before the replicas."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import sqlalchemy as sa

from authz.store import schema_upgrade
from authz.store.connect import DEFAULT_URL, make_engine


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get("AUTHZ_DB", DEFAULT_URL),
                   help="store URL: sqlite:///path or postgresql+psycopg://... "
                        "(env AUTHZ_DB; default %(default)s)")


def register(sub: Any) -> None:
    """Add the `db` command group to the top-level parser."""
    db = sub.add_parser("db", help="store schema migrations")
    dsub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    dsub.required = True
    p = dsub.add_parser("upgrade", help="migrate the store's schema to the newest revision; "
                                         "prints the revision reached")
    _db_arg(p)
    p.set_defaults(func=cmd_upgrade)
    p = dsub.add_parser("current", help="print the store's schema revision and this code's head")
    _db_arg(p)
    p.set_defaults(func=cmd_current)


def _safe(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def cmd_upgrade(args: argparse.Namespace) -> int:
    try:
        engine = make_engine(args.db)
    except (ValueError, sa.exc.ArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        before = schema_upgrade.current(engine)
        reached = schema_upgrade.upgrade(engine)
    except sa.exc.OperationalError as exc:
        print(f"error: cannot reach {_safe(args.db)}: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    note = "already at head" if before == reached else f"from {before or 'empty'}"
    print(f"{reached} ({note})")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    try:
        engine = make_engine(args.db)
        at = schema_upgrade.current(engine)
    except (ValueError, sa.exc.ArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sa.exc.OperationalError as exc:
        print(f"error: cannot reach {_safe(args.db)}: {exc.orig}", file=sys.stderr)
        return 1
    head = schema_upgrade.head()
    print(f"database: {at or 'empty'}\nhead: {head}")
    return 0 if at == head else 1
