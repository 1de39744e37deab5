"""`authz migrate preview|apply|status|auto|quota`: migrations from the command line.

Works on the store directly (like `authz directory import`), so an operator needs no
running server; a job started here is the same durable job a server runs, and a server
starting later resumes it if this command is interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from authz.engine.engine import DEFAULT_POLICY_DIR, PolicySet
from authz.errors import AuthzError
from authz.migration.auto import auto_migrate
from authz.migration.jobs import Job
from authz.migration.runner import run_job
from authz.migration.service import MigrationStore
from authz.migration.settings import settings_from_manifest
from authz.store import open_store
from authz.store.connect import DEFAULT_URL


def register(sub: Any) -> None:
    """Add the `migrate` command group to the top-level parser."""
    m = sub.add_parser("migrate", help="move an organization's users to their own identities")
    msub = m.add_subparsers(dest="migrate_command", metavar="SUBCOMMAND")
    msub.required = True

    def cmd(name: str, help_: str, fn: Any, org: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = msub.add_parser(name, help=help_)
        p.add_argument("--db", default=os.environ.get("AUTHZ_DB", DEFAULT_URL),
                       help="store URL (env AUTHZ_DB)")
        p.add_argument("--policy-dir", type=Path, default=DEFAULT_POLICY_DIR, help="compiled policy folder")
        if org:
            p.add_argument("--org", required=True, help="organization id")
        p.set_defaults(func=fn)
        return p

    p = cmd("preview", "common users, candidates with usage, excluded users, slots left", cmd_preview)
    p.add_argument("--caller", required=True, help="CRM admin user id running the migration")
    p = cmd("apply", "migrate the selected users (a durable background job)", cmd_apply)
    p.add_argument("--caller", required=True, help="CRM admin user id running the migration")
    p.add_argument("--request-key", default="", help="idempotency key (default: a new one)")
    p.add_argument("--no-wait", action="store_true", help="only start the job")
    p.add_argument("users", nargs="+", help="CRM user ids")
    p = cmd("status", "a job's progress and per-user results", cmd_status)
    p.add_argument("job_id")
    p.add_argument("--resume", action="store_true", help="run the job to completion if unfinished")
    p = cmd("auto", "migrate organizations past their deadline by finance usage", cmd_auto, org=False)
    p.add_argument("--org", action="append", help="only these organizations (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list who would be migrated; change nothing")
    p = cmd("quota", "show or change an organization's integration-user quota (audited)", cmd_quota)
    p.add_argument("--set", type=int, help="new quota")
    p.add_argument("--operator", default="", help="who changes it (required with --set)")
    p.add_argument("--reason", default="", help="why, e.g. a support ticket (required with --set)")


def _open(args: argparse.Namespace) -> MigrationStore:
    policies = PolicySet(args.policy_dir)
    store = open_store(args.db)
    store.require_current_schema()
    return MigrationStore(store, lambda org: settings_from_manifest(policies.get(org).manifest))


def bar(job: Job, width: int = 40) -> str:
    """A one-line progress bar."""
    frac = job.processed / job.total if job.total else 1.0
    fill = int(frac * width)
    return (f"[{'#' * fill}{'.' * (width - fill)}] {job.processed}/{job.total} "
            f"({job.done} done, {job.rejected} rejected) {job.state}")


def _progress(job: Job) -> None:
    print("\r" + bar(job), end="", file=sys.stderr, flush=True)


def _print_job(job: Job) -> None:
    print(f"job {job.job_id} ({job.kind}, key {job.request_key}) {job.state}: {job.done} done, "
          f"{job.rejected} rejected of {job.total}; directory revision {job.revision}")
    for i in job.items:
        extra = f" -> {i.integration_user_id}" if i.integration_user_id else ""
        why = f": {i.reason} ({i.message})" if i.reason else ""
        print(f"  {i.crm_user_id}: {i.state}{extra}{why}")


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = fn(args)
            return code
        except AuthzError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 2
    return run


@_guard
def cmd_preview(args: argparse.Namespace) -> int:
    p = _open(args).preview(args.org, args.caller)
    print(f"{args.org} at directory revision {p.directory_revision}: {p.status_line()}; "
          f"{p.slots_left} of {p.quota} integration-user slots left")
    print(f"common users ({len(p.common)}), keep their finance roles:")
    for c in p.common:
        books = f" Books {c.books_user_id} ({c.books_status})" if c.books_user_id else ""
        print(f"  {c.crm_user_id} <{c.email}> {c.name}{books} {', '.join(c.roles) or '-'}")
    print(f"candidates ({len(p.candidates)}), most active first:")
    for d in p.candidates:
        print(f"  {d.crm_user_id} <{d.email}> usage {d.usage}")
    print(f"cannot become integration users ({len(p.excluded)}):")
    for e in p.excluded:
        print(f"  {e.crm_user_id}: {e.reason} ({e.message})")
    return 0


@_guard
def cmd_apply(args: argparse.Namespace) -> int:
    ms = _open(args)
    job = ms.apply(args.org, args.caller, args.users, args.request_key or uuid.uuid4().hex)
    print(f"job {job.job_id} accepted: {job.total} users", file=sys.stderr)
    if not args.no_wait:
        job = run_job(ms, args.org, job.job_id, progress=_progress)
        print(file=sys.stderr)
    _print_job(job)
    return 0


@_guard
def cmd_status(args: argparse.Namespace) -> int:
    ms = _open(args)
    job = ms.job(args.org, args.job_id)
    if args.resume and job.state != "done":
        job = run_job(ms, args.org, job.job_id, progress=_progress)
        print(file=sys.stderr)
    _print_job(job)
    return 0


@_guard
def cmd_auto(args: argparse.Namespace) -> int:
    ms = _open(args)
    orgs = args.org or PolicySet(args.policy_dir).org_ids()
    for r in auto_migrate(ms, orgs, dry_run=args.dry_run):
        if r.skipped:
            print(f"{r.org_id}: skipped, {r.skipped}")
            continue
        print(f"{r.org_id}: deadline {r.deadline}; {'would migrate' if args.dry_run else 'migrating'} "
              f"{len(r.selected)}: {', '.join(r.selected)}")
        if r.job is not None:
            job = run_job(ms, r.org_id, r.job.job_id, progress=_progress)
            print(file=sys.stderr)
            _print_job(job)
    return 0


@_guard
def cmd_quota(args: argparse.Namespace) -> int:
    ms = _open(args)
    if args.set is not None:
        old = ms.set_quota(args.org, args.set, args.operator, args.reason)
        print(f"{args.org}: quota {old} -> {args.set} (by {args.operator}: {args.reason})")
        return 0
    print(f"{args.org}: quota {ms.quota(args.org)}")
    for h in ms.quota_history(args.org):
        print(f"  {h['created_at']} {h['operator']}: {h['old_quota']} -> {h['new_quota']} ({h['reason']})")
    return 0
