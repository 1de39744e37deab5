"""The `authz` command line, a layer of its own: every subcommand is a module of this
package exposing `register(subparsers)`. It sits above the domain (authz), the client
(authz_client) and the server, and nothing imports it (tests/test_architecture.py).
Every command's handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Modules exposing register(subparsers); missing ones are skipped so that partial
# installs still offer what they have.
COMMAND_GROUPS = (
    "authz_server.cli.policy",
    "authz_server.cli.db",
    "authz_server.cli.audit",
    "authz_server.cli.migrate",
    "authz_server.cli.org_import",
    "authz_server.cli.org",
    "authz_server.cli.server_commands",
    "authz_server.cli.completion",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authz",
        description="Authorization server for finance operations taken from a CRM.",
    )
    parser.add_argument("--version", action="version", version=f"authz {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        module.register(sub)
    return parser


def _version() -> str:
    """The project's one version (client/_version.py, read by both pyproject files)."""
    if TYPE_CHECKING:  # mypy, run over the source tree, knows the client as `client`
        from client._version import __version__
    else:
        from authz_client._version import __version__
    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`authz check ... | head -1`): stop quietly, as Unix tools
        # do; stdout goes to /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
