"""`authz org import`: an organization's policy sources and directory from its exports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import authz
from authz.onboarding import importer
from authz.policy.errors import PolicyError

DEFAULT_ROOT = Path(authz.__file__).resolve().parent / "policies"
EXAMPLES = Path(authz.__file__).resolve().parents[1] / "examples" / "exports"


def org_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]
                 ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The `org` command group's subcommands, made once whoever registers first (other
    `authz org ...` commands add theirs to the same group)."""
    parser = sub.choices.get("org")
    if parser is None:
        parser = sub.add_parser("org", help="onboard organizations (import from Books, ...)")
        osub = parser.add_subparsers(dest="org_command", metavar="SUBCOMMAND")
        osub.required = True
        parser.set_defaults(org_subparsers=osub)
    found: argparse._SubParsersAction[argparse.ArgumentParser] = parser.get_default(
        "org_subparsers")
    return found


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = org_commands(sub).add_parser(
        "import", help="write an organization's policy sources and directory from its Books and "
        "CRM exports (see authz/onboarding/exports.py)")
    p.add_argument("exports", nargs="*", type=Path,
                   help="export folders, one per organization (default with --all: "
                        "examples/exports/*)")
    p.add_argument("--all", action="store_true", help="every folder under examples/exports/")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                   help="policy root to write orgs/<org>/ under (default authz/policies)")
    p.add_argument("--check", action="store_true",
                   help="CI: write nothing; exit 1 naming files that differ from a fresh import")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    folders: list[Path] = list(args.exports)
    if args.all:
        if not EXAMPLES.is_dir():
            print(f"error: --all reads {EXAMPLES}, which this installation does not have",
                  file=sys.stderr)
            return 2
        folders += sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
    if not folders:
        print("error: name an export folder, or --all", file=sys.stderr)
        return 2
    built = []
    for folder in folders:
        try:
            imp = importer.build(folder, _shown(folder))
            importer.validate(imp, args.root)
        except PolicyError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            print(f"{len(exc.problems)} problem(s) in {_shown(folder)}; nothing written",
                  file=sys.stderr)
            return 2
        built.append(imp)
    code = 0
    for imp in built:
        if args.check:
            stale = importer.stale(imp, args.root)
            for rel in stale:
                print(f"stale: {args.root / rel} differs from `authz org import` of its exports",
                      file=sys.stderr)
            code = code or (1 if stale else 0)
            if not stale:
                print(f"{imp.org_id}: sources and directory match a fresh import")
            continue
        changed = importer.write(imp, args.root)
        print(f"{imp.org_id}: " + (f"wrote {', '.join(changed)}" if changed else "no change")
              + ("; next: authz policy diff HEAD, authz policy compile" if changed else ""))
    return code


def _shown(folder: Path) -> str:
    """The folder as the generated files name it: relative to the repository when inside."""
    try:
        return folder.resolve().relative_to(EXAMPLES.parents[1]).as_posix()
    except ValueError:
        return folder.as_posix()
