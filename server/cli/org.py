"""`authz org ...`: setting organizations up (DOMAIN.md §6: new sign-ups start unified).

`authz org create` joins the `org` command group (made in one place,
authz_server.cli.org_import.org_commands, beside `authz org import`). It writes the
organization's policy source (unless one is there already, e.g. from an import),
compiles the policy, and signs the organization up in the store: unified from set-up, no
migration window, integration users available at once. Nothing is written when the
phased release has not reached the organization, when the policy does not compile or
when the directory is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

import authz
from authz import catalog

DEFAULT_ROOT = Path(authz.__file__).resolve().parent / "policies"


def register(sub: Any) -> None:
    """Add the `org` command group to the top-level parser."""
    from .org_import import org_commands  # the one `org` group (import, create)

    p = org_commands(sub).add_parser(
        "create", help="sign a new organization up: unified from set-up, integration users at once",
        description="Sign a new organization up (DOMAIN §6): its policy source (unless "
        "ROOT/orgs/ORG/organization.yaml exists already), the compiled policy, its directory in "
        "the store, unified at once with no migration window; the CRM users named with "
        "--integration-user become integration users now.")
    p.add_argument("--org", required=True, help="organization id, e.g. newco-eu")
    p.add_argument("--name", default="", help="organization name (default: the id)")
    p.add_argument("--data-centre", default="EU", choices=catalog.DATA_CENTRES)
    p.add_argument("--edition", default="professional", choices=catalog.EDITIONS)
    p.add_argument("--products", default="books",
                   help="connected products, comma-separated (default: books)")
    p.add_argument("--admin", required=True, help="the administrator's CRM user id")
    p.add_argument("--admin-email", default="", help="(when --directory does not list the admin)")
    p.add_argument("--admin-name", default="", help="(when --directory does not list the admin)")
    p.add_argument("--directory", type=Path, help="directory YAML of the organization's users")
    p.add_argument("--integration-user", action="append", default=[], metavar="CRM_USER_ID",
                   help="make this CRM user an integration user at set-up (repeatable)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="policy source root")
    p.add_argument("--out", type=Path, help="compiled policy folder (default ROOT/generated)")
    p.add_argument("--db", default=os.environ.get("AUTHZ_DB", "sqlite:///var/authz.db"),
                   help="store URL (env AUTHZ_DB)")
    p.set_defaults(func=cmd_create)


def _source(args: argparse.Namespace, products: list[str]) -> str:
    return yaml.safe_dump({
        "id": args.org, "name": args.name or args.org, "data_centre": args.data_centre,
        "edition": args.edition, "products": products, "mode": "unified",
        "integration_owner": args.admin, "approvals": {"allow_self_approval": False},
    }, sort_keys=False)


def cmd_create(args: argparse.Namespace) -> int:
    """Exit 0 signed up; 2 refused (the message says why), nothing written."""
    from authz.errors import AuthzError
    from authz.policy.errors import PolicyError

    products = [p.strip() for p in args.products.split(",") if p.strip()]
    unknown = [p for p in products if p not in catalog.PRODUCTS]
    if unknown or not products:
        print(f"error: --products: unknown {', '.join(unknown) or '(none given)'}; expected "
              + ", ".join(catalog.PRODUCTS), file=sys.stderr)
        return 2
    source = args.root / "orgs" / args.org / "organization.yaml"
    wrote = not source.exists()
    if wrote:
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"# {args.name or args.org}: signed up with `authz org create`.\n"
                          + _source(args, products))
    try:
        return _create(args)
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
    except AuthzError as exc:
        print(f"error: {exc}", file=sys.stderr)
    if wrote:  # nothing half-written
        source.unlink()
        if not any(source.parent.iterdir()):
            source.parent.rmdir()
    print(f"{args.org}: not created", file=sys.stderr)
    return 2


def _create(args: argparse.Namespace) -> int:
    from authz import directory_file
    from authz.directory import CrmUser
    from authz.directory_check import DirectoryPolicy
    from authz.engine.engine import PolicySet
    from authz.errors import FailedPrecondition, InvalidArgument
    from authz.migration.auto import sign_up
    from authz.migration.service import MigrationStore
    from authz.migration.settings import settings_from_manifest
    from authz.policy import compiler
    from authz.policy.sources import read_tree
    from authz.policy.yamlsrc import load
    from authz.store import open_store

    tree = read_tree(args.root)
    org = next(o for o in tree.orgs if o.id == args.org)
    if not tree.release.available(org.data_centre, org.edition):
        raise FailedPrecondition(f"the unified mode is not yet released to {org.data_centre} "
                                 f"{org.edition} organizations: '{args.org}' cannot sign up "
                                 "unified yet")
    files = compiler.render(tree)
    out: Path = args.out or args.root / compiler.GENERATED
    policies = PolicySet(out)
    manifest = compiler.manifest_of(org, tree)
    crm: list[CrmUser] = []
    finance: list[Any] = []
    integration = list(args.integration_user)
    if args.directory is not None:
        src = load(args.directory, str(args.directory))
        df = directory_file.parse(src, DirectoryPolicy.from_manifest(manifest))
        if df.org_id != args.org:
            raise InvalidArgument("directory", f"{args.directory} is the directory of "
                                  f"'{df.org_id}', not '{args.org}'")
        crm, finance = list(df.crm_users), list(df.finance_users)
        integration += [i.crm_user_id for i in df.integration_users if i.crm_user_id not in integration]
    admin = next((u for u in crm if u.id == args.admin), None)
    if admin is None:
        if not args.admin_email:
            raise InvalidArgument("admin", f"'{args.admin}' is not in the directory: give "
                                  "--admin-email and --admin-name")
        admin = CrmUser(args.admin, args.admin_email, args.admin_name or args.admin, is_admin=True)
    others = [u for u in crm if u.id != admin.id]
    store = open_store(args.db)
    try:
        store.require_current_schema()
        compiler.write_atomic(files, out)  # the server reloads it; sign-up reads it
        ms = MigrationStore(store, lambda o: settings_from_manifest(policies.get(o).manifest))
        job = sign_up(ms, args.org, admin, others, integration, finance)
    finally:
        store.close()
    added = _added(job.done if job else 0, job.rejected if job else 0)
    print(f"{args.org}: signed up unified (no migration window); {added}; policy in {out}")
    if job is not None:
        for item in job.items:
            why = f": {item.reason} ({item.message})" if item.reason else ""
            print(f"  {item.crm_user_id}: {item.state}{why}")
    return 0


def _added(done: int, rejected: int) -> str:
    """What the sign-up did with the integration users asked for."""
    if not done and not rejected:
        return "no integration users yet (Migrate adds them at any time)"
    return f"{done} integration user(s) added" + (f", {rejected} refused" if rejected else "")
