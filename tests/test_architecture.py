"""The layers, as rules over the import graph (README, Architecture):

- the domain (`authz`) imports no gRPC and nothing of the server, the client or the CLI;
- the store (`authz/store`) imports no domain package above it: only the directory model,
  errors, the wait budget and the audit record's format;
- nothing imports the command line (`authz_server.cli`) but itself;
- the client imports nothing of the server or the domain (only the shared stubs);
- build tools (`tools/`) are imported by no runtime package;
- no import cycles, lazy imports included (only `if TYPE_CHECKING:` imports are left out).

Each rule is a function over a source tree, so the tests below also run it on a small
tree that breaks it and check that it says so.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> the name it installs as (pyproject's package-dir)
PACKAGES = {"authz": "authz", "server": "authz_server", "client": "authz_client", "tools": "tools"}
GENERATED = ("authz/v1/", "client/v1/", "server/xds/", "authz/store/alembic/versions/")
GRPC = ("grpc", "grpc_health", "grpc_reflection", "grpc_status")
STORE_MAY_USE = ("authz.store", "authz.directory", "authz.errors", "authz.budget", "authz.audit.chain")


@dataclass(frozen=True)
class Import:
    importer: str  # module name, as installed
    path: str  # file, relative to the root
    target: str  # the imported module (or module.name for `from module import name`)
    lazy: bool  # inside a function


def _module(rel: Path) -> str:
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path) -> Iterator[tuple[str, Path]]:
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            if not str(rel).startswith(GENERATED):
                yield _module(rel), path


def imports(root: Path) -> list[Import]:
    out: list[Import] = []
    for name, path in sources(root):
        rel = str(path.relative_to(root))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(node: ast.AST, lazy: bool, name: str = name, rel: str = rel,
                  package: str = package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for orelse in child.orelse:
                        visit(orelse, lazy)
                    continue
                inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                if isinstance(child, ast.Import):
                    out.extend(Import(name, rel, a.name, lazy) for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[:len(package.split(".")) - child.level + 1]
                        base = ".".join([*up, *([child.module] if child.module else [])])
                    out.extend(Import(name, rel, f"{base}.{a.name}", lazy) for a in child.names)
                visit(child, inner)

        visit(ast.parse(path.read_text(), rel), False)
    return out


def _within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def domain_imports_no_transport(root: Path) -> list[str]:
    return [f"{i.path} imports {i.target}" for i in imports(root)
            if _within(i.importer, "authz") and not _within(i.importer, "authz.v1")
            and (i.target.split(".")[0] in (*GRPC, "authz_server", "authz_client", "tools", "aiohttp")
                 or _within(i.target, "authz.v1"))]


def store_imports_nothing_above_it(root: Path) -> list[str]:
    return [f"{i.path} imports {i.target}" for i in imports(root)
            if _within(i.importer, "authz.store") and _within(i.target, "authz")
            and i.target != "authz" and not any(_within(i.target, m) for m in STORE_MAY_USE)]


def nothing_imports_the_cli(root: Path) -> list[str]:
    return [f"{i.path} imports {i.target}" for i in imports(root)
            if _within(i.target, "authz_server.cli") and not _within(i.importer, "authz_server.cli")]


def client_imports_no_server_nor_domain(root: Path) -> list[str]:
    return [f"{i.path} imports {i.target}" for i in imports(root)
            if _within(i.importer, "authz_client")
            and (i.target.split(".")[0] in ("authz_server", "tools", "server")
                 or (_within(i.target, "authz") and not _within(i.target, "authz.v1")
                     and i.target != "authz"))]


def runtime_imports_no_build_tool(root: Path) -> list[str]:
    return [f"{i.path} imports {i.target}" for i in imports(root)
            if not _within(i.importer, "tools") and _within(i.target, "tools")]


def import_cycles(root: Path) -> list[str]:
    """Cycles between our modules (strongly connected components of the import graph).
    `from package import name` depends on package.name when that is a module, else on
    the package; a package's __init__ importing its own modules is not a cycle."""
    modules = {name for name, _ in sources(root)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports(root):
        target = i.target if i.target in modules else i.target.rpartition(".")[0]
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != i.importer and not _within(i.importer, target):
            graph[i.importer].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(" <-> ".join(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


RULES = (domain_imports_no_transport, store_imports_nothing_above_it, nothing_imports_the_cli,
         client_imports_no_server_nor_domain, runtime_imports_no_build_tool, import_cycles)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_layers_hold(rule: Callable[[Path], list[str]]) -> None:
    assert rule(REPO) == []


def test_the_rules_see_the_packages() -> None:
    """A rule over an empty graph passes whatever the tree: the graph must hold the layers."""
    found = {i.importer.split(".")[0] for i in imports(REPO)}
    assert {"authz", "authz_server", "authz_client", "tools"} <= found
    assert any(_within(i.importer, "authz_server.cli") for i in imports(REPO))
    assert any(_within(i.importer, "authz.store") for i in imports(REPO))


def _tree(root: Path, files: dict[str, str]) -> Path:
    for folder in PACKAGES:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_each_rule_fails_when_broken(tmp_path: Path) -> None:
    broken = {
        domain_imports_no_transport: {"authz/engine/x.py": "import grpc\n"},
        store_imports_nothing_above_it: {"authz/store/x.py": "from authz.migration import plan\n"},
        nothing_imports_the_cli: {"server/api/x.py": "def f():\n    from ..cli import main\n"},
        client_imports_no_server_nor_domain: {"client/x.py": "from authz.engine import decide\n"},
        runtime_imports_no_build_tool: {"server/process/x.py": "from tools import codegen\n"},
        import_cycles: {"server/api/a.py": "from . import b\n",
                        "server/api/b.py": "def f():\n    from .a import g\n"},
    }
    for n, (rule, files) in enumerate(broken.items()):
        root = _tree(tmp_path / str(n), files)
        assert rule(root), f"{rule.__name__} did not see {files}"
        for other in RULES:
            if other is not rule:
                assert other(root) == [], f"{other.__name__} on {files}"
