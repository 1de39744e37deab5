"""`authz completion bash|zsh`: shell completion generated from the argparse parser.

Generated (by shtab) rather than hand-written so that completion can never drift from
the commands: every subcommand and flag that `authz --help` knows is completed, and a
new command group is picked up without touching this module.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

SHELLS = ("bash", "zsh")
INSTALL = {
    "bash": "authz completion bash > ~/.local/share/bash-completion/completions/authz",
    "zsh": "authz completion zsh > \"${fpath[1]}/_authz\"   # then: compinit",
}


def register(sub: Any) -> None:
    """Add `completion` to the top-level parser."""
    p = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script for your shell on stdout.",
        epilog="install:\n" + "\n".join(f"  {s}: {cmd}" for s, cmd in INSTALL.items())
        + "\nor for this shell only: source <(authz completion bash)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    p.set_defaults(func=cmd_completion)


def script(shell: str) -> str:
    """The completion script for `shell`, from the full `authz` parser."""
    import shtab

    from . import build_parser

    parser = build_parser()
    _files_for_paths(parser)
    return shtab.complete(parser, shell=shell)


def _files_for_paths(parser: argparse.ArgumentParser) -> None:
    """Complete file arguments (--request, --config, FILE) with file names."""
    import shtab

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _files_for_paths(child)
        elif action.type is not None and getattr(action.type, "__name__", "") == "Path":
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0
