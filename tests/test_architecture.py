"""Layering the design card holds to: the domain imports no transport."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("grpc", "grpc_health", "grpc_reflection", "grpc_status", "authz_server", "authz_client")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_domain_modules_import_no_grpc_nor_transport() -> None:
    offenders = []
    for path in sorted((REPO / "authz").rglob("*.py")):
        if "v1" in path.relative_to(REPO / "authz").parts[:1]:
            continue  # generated stubs are not domain code
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN or name.startswith("authz.v1"):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []


def test_client_imports_no_domain_code() -> None:
    offenders = []
    for path in sorted((REPO / "client").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")
            if top[0] == "authz" and not name.startswith("authz.v1") and name != "authz":
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
            if top[0] == "authz_server":
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []
