"""Vendor the Envoy ext_authz stubs from PyPI `xds-protos` into authz_server/xds/.

Why vendor instead of depending on xds-protos: installed beside our dependencies it
silently overwrites googleapis-common-protos' google/rpc/*_pb2.py and google/api files
with its own (older) generated copies, adds top-level `test`, `opentelemetry` and `cel`
packages, and uninstalling it then deletes google/rpc/status_pb2.py, breaking
grpc_status and with it our server. So this tool installs xds-protos into a throwaway
virtualenv, imports the Authorization service there to learn the exact closure of
generated modules it needs (19 of its 766), and copies only those, flattened into one
package with imports rewritten to be relative. google.* modules are not copied: ours
(protobuf, googleapis-common-protos) provide the same proto files.

Run: `python -m tools.xds_vendor` (needs PyPI); the result is committed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

XDS_PROTOS = "xds-protos==1.85.0"
ROOTS = ("envoy.service.auth.v3.external_auth_pb2", "envoy.service.auth.v3.external_auth_pb2_grpc")
OUT = Path(__file__).resolve().parent.parent / "server" / "xds"
_PROBE = """
import json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    __import__(name)
mods = sorted(m for m in set(sys.modules) - before
              if m.endswith(("_pb2", "_pb2_grpc")) and not m.startswith("google."))
print(json.dumps({m: sys.modules[m].__file__ for m in mods}))
"""
_IMPORT = re.compile(r"^from ((?:envoy|udpa|validate|xds)(?:\.\w+)*) import (\w+) as (\w+)$", re.M)


def flat(module: str) -> str:
    """envoy.type.v3.percent_pb2 -> envoy_type_v3_percent_pb2."""
    return module.replace(".", "_")


def vendor(out: Path = OUT) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = str(venv / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", XDS_PROTOS], check=True)
        found = json.loads(subprocess.run([py, "-c", _PROBE, *ROOTS], check=True,
                                          capture_output=True, text=True).stdout)
        out.mkdir(exist_ok=True)
        for old in out.glob("*_pb2*.py"):
            old.unlink()
        for module, path in found.items():
            text = Path(path).read_text()
            text = _IMPORT.sub(lambda m: f"from . import {flat(m[1] + '.' + m[2])} as {m[3]}", text)
            (out / f"{flat(module)}.py").write_text(text)
    (out / "__init__.py").write_text(
        f'"""Envoy ext_authz stubs vendored from {XDS_PROTOS} by tools.xds_vendor; '
        'do not edit."""\n')
    return sorted(found)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m tools.xds_vendor",
                            description=__doc__).parse_args(argv)
    for module in vendor():
        print(f"vendored {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
