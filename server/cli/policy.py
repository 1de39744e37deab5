"""`authz policy compile|validate|test|diff`: the policy author's daily tools."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import authz
from authz.decision import Decision
from authz.policy import compiler, integrity, report, sealkey, testing
from authz.policy.diff import diff_specs
from authz.policy.errors import PolicyError
from authz.policy.sources import read_tree

DEFAULT_ROOT = Path(authz.__file__).resolve().parent / "policies"
KEY_ENV = "AUTHZ_POLICY_KEY_FILE"


def _key_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--policy-key-file", action="append", metavar="PATH",
                   help=f"policy key file (repeatable; env {KEY_ENV}, comma-separated): {what}")


def _keys(args: argparse.Namespace) -> tuple[sealkey.PolicyKey, ...]:
    """The key files of --policy-key-file, else of the environment (none: unkeyed)."""
    paths = args.policy_key_file or [p for p in os.environ.get(KEY_ENV, "").split(",")
                                     if p.strip()]
    return sealkey.read_keys(p.strip() for p in paths)


def register(sub: Any) -> None:
    """Add the `policy` command group to the top-level parser."""
    policy = sub.add_parser("policy", help="compile, validate, test and diff policy sources")
    psub = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    psub.required = True

    def root_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                       help="policy root holding shared/ and orgs/ (default: %(default)s)")

    p = psub.add_parser("compile", help="compile sources to Casbin models and policies")
    root_arg(p)
    p.add_argument("--out", type=Path, help="output folder (default: ROOT/generated)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming stale files if the output is out of date")
    _key_arg(p, "sign every seal with the first")
    p.set_defaults(func=cmd_compile)

    p = psub.add_parser("validate", help="check sources and test suites; write nothing")
    root_arg(p)
    p.set_defaults(func=cmd_validate)

    p = psub.add_parser("test", help="run the test suites beside each organization's sources")
    root_arg(p)
    p.add_argument("--org", action="append", help="only this organization (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every case and gap")
    p.add_argument("--junit", type=Path, metavar="FILE",
                   help="also write the results as JUnit XML (one testcase per case)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON instead of text")
    p.add_argument("--explain", action="store_true",
                   help="for each case, the source YAML file:line of the rule that granted or "
                        "refused")
    p.set_defaults(func=cmd_test)

    p = psub.add_parser("verify", help="verify compiled policy against its seals, as every "
                        "server load does; exit 1 naming each file that does not verify")
    p.add_argument("--policy-dir", type=Path, default=DEFAULT_ROOT / compiler.GENERATED,
                   help="compiled policy folder (default: %(default)s)")
    _key_arg(p, "every seal must be signed by one of them, as a server given them requires")
    p.set_defaults(func=cmd_verify)

    p = psub.add_parser("diff", help="how decisions change between two policy trees")
    root_arg(p)
    p.add_argument("a", help="policy root folder or git revision (before)")
    p.add_argument("b", nargs="?", default=None,
                   help="policy root folder or git revision (after; default: the working tree)")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 1 when decisions change (as `git diff --exit-code`), 0 when not")
    p.set_defaults(func=cmd_diff)


def _fail(exc: PolicyError, root: Path) -> int:
    """Report located problems with paths a terminal or editor can open."""
    for problem in exc.roots:
        print(f"error: {root / str(problem)}", file=sys.stderr)
    if exc.consequences:
        files = sorted({p.where.file for p in exc.consequences})
        print(f"note: {len(exc.consequences)} unknown reference(s) in {', '.join(files)} "
              "likely follow from the error(s) above; fix those first", file=sys.stderr)
    print(f"{len(exc.roots)} problem(s); nothing written", file=sys.stderr)
    return 2


def _progress(verb: str) -> Callable[[int, int], None]:
    """A progress line on stderr for long runs (50 organizations or more)."""

    def report(n: int, total: int) -> None:
        if total >= 50 and (n == total or n % max(1, total // 20) == 0):
            print(f"\r{verb} {n}/{total} organizations", end="" if n < total else "\n",
                  file=sys.stderr, flush=True)

    return report


def cmd_compile(args: argparse.Namespace) -> int:
    root: Path = args.root
    out: Path = args.out or root / compiler.GENERATED
    started = time.perf_counter()
    try:
        keys = _keys(args)
    except sealkey.KeyFileError as exc:
        print(f"error: {exc}; nothing written", file=sys.stderr)
        return 2
    try:
        tree = read_tree(root, progress=_progress("reading"))
    except PolicyError as exc:
        return _fail(exc, args.root)
    files = compiler.render(tree, progress=_progress("compiling"))
    if keys:  # signed here, after the compile: the compiler itself never sees a key
        files = {rel: sealkey.sign(data, keys[0]) if rel.endswith(integrity.SEAL_SUFFIX)
                 else data for rel, data in files.items()}
    changed = compiler.stale(files, out)
    elapsed = time.perf_counter() - started
    if args.check:
        if changed:
            print("stale generated policy (run `authz policy compile`):", file=sys.stderr)
            for rel in changed:
                print(f"  {out / rel}", file=sys.stderr)
            return 1
        print(f"generated policy is up to date ({len(tree.orgs)} organizations)")
        return 0
    if changed:
        compiler.write_atomic(files, out)
    signed = f", seals signed with key id {keys[0].key_id}" if keys else ""
    print(f"compiled {len(tree.orgs)} organizations in {elapsed:.2f}s; "
          f"{len(changed)} file(s) changed in {out}{signed}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        tree = read_tree(args.root)
        for org in tree.orgs:
            org_dir = args.root / "orgs" / org.id
            if (org_dir / "tests").is_dir():
                testing.load_suites(org_dir, args.root, org.id)
    except PolicyError as exc:
        return _fail(exc, args.root)
    print(f"{len(tree.orgs)} organizations valid")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    try:
        tree = read_tree(args.root, only=set(args.org) if args.org else None)
        results = testing.run(tree, args.root)
    except PolicyError as exc:
        return _fail(exc, args.root)
    passed = sum(r.passed for r in results)
    failed = sum(len(r.failures) for r in results)
    explained = explain_all(results) if args.explain else None
    if args.junit:
        args.junit.write_bytes(report.as_junit(results, args.root))
    if args.json:
        sys.stdout.write(report.as_json(results, args.root, explained))
        return 1 if failed else 0
    for r in results:
        print(f"organization {r.org_id}: {r.passed} passed, {len(r.failures)} failed")
        for o in r.outcomes if explained is not None else ():
            print(f"  {'ok  ' if not o.problems else 'FAIL'} {args.root / str(o.case.where)}: "
                  f"{o.case.name}")
            for line in (explained or {}).get(id(o), []):
                print(f"       {line}")
        for f in r.failures:
            print(f"  FAIL {args.root / str(f.case.where)}: {f.case.name}")
            for problem in f.problems:
                print(f"       {problem}")
        gaps = {k: v for k, v in r.uncovered.items() if v}
        if not gaps:
            print("  coverage: every role, field rule and approval rule exercised")
        for kind, items in gaps.items():
            print(f"  not exercised, {kind}: {len(items)}")
            for item in items if args.verbose or kind != "grants" else items[:0]:
                print(f"    {item}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def explain_all(results: list[testing.OrgResult]) -> dict[int, list[str]]:
    """Each case's sources (by id of its outcome): where the deciding rule is written."""
    out: dict[int, list[str]] = {}
    for r in results:
        for o in r.outcomes:
            d = o.decision
            out[id(o)] = ([line for line in d.matched_rules if line.startswith("source:")]
                          if isinstance(d, Decision) else [f"refused: {d}"])
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    from authz.engine.engine import PolicySet
    from authz.engine.index import load_org
    from authz.policy.compiler import MODEL_CONF

    try:
        keys = _keys(args)
    except sealkey.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sealkey.require(keys)
    policies = PolicySet(args.policy_dir)
    orgs = policies.org_ids()
    bad = 0
    signers: dict[str, int] = {}
    for org in orgs:
        try:
            files = integrity.verify(args.policy_dir / "orgs", org, MODEL_CONF)
            load_org(args.policy_dir, org)
        except integrity.PolicyIntegrityError as exc:
            bad += 1
            print(f"error: {exc.file}: {exc.problem}", file=sys.stderr)
        else:
            signers[files.signed_by] = signers.get(files.signed_by, 0) + 1
    if bad:
        print(f"{bad} of {len(orgs)} organizations do not verify", file=sys.stderr)
        return 1
    print(f"{len(orgs)} organizations verify")
    for key_id, n in sorted(signers.items()):
        state = ("unsigned" if not key_id else f"signed with key id {key_id}: MAC "
                 + ("valid" if keys else "unchecked (no --policy-key-file given)"))
        print(f"  {n} {state}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        lines = diff_specs(args.a, args.b or str(args.root), args.root)
    except PolicyError as exc:
        return _fail(exc, args.root)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not lines:
        print("no change in decisions")
    for line in lines:
        print(line)
    return 1 if lines and args.exit_code else 0
