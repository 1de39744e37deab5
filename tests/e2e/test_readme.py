"""README examples cannot rot: every ```sh block whose first line is `# doc-test` runs in
bash (errexit, pipefail) from the repository root, with a real server at $AUTHZ_SERVER
(gRPC) and $AUTHZEN_URL (its AuthZEN HTTP API).
Blocks without the marker are illustrations and are left alone."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.serverproc import BIN, REPO, ServerProc, server_env

BLOCK = re.compile(r"^```sh\n(# doc-test\b.*?)^```", re.M | re.S)


def blocks() -> list[tuple[int, str]]:
    text = (REPO / "README.md").read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_readme_has_doc_tests() -> None:
    assert len(blocks()) >= 3


@pytest.mark.parametrize(("line", "block"), blocks(), ids=[f"README.md:{n}" for n, _ in blocks()])
def test_readme_block_runs(server: ServerProc, line: int, block: str) -> None:
    env = server_env() | {"AUTHZ_SERVER": server.address, "AUTHZEN_URL": server.http_url,
                          "PATH": f"{BIN}:{server_env().get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (f"README.md:{line} failed ({done.returncode}):\n{block}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
