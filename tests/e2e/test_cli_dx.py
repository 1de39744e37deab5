"""Developer experience: shell completion driven through a real bash, `authz check
--request FILE` (YAML and JSON) against a real server, and the messages a newcomer
sees when something is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.serverproc import AUTHZ, ServerProc, free_port, run_authz


def complete(script: Path, line: str) -> list[str]:
    """What bash's completion function offers for `line` (cursor at the end)."""
    words = line.split(" ")
    program = (f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
               f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; "
               "_shtab_authz; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


def test_bash_completion_completes_commands_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "authz.bash"
    script.write_text(run_authz("completion", "bash").stdout)
    assert "check" in complete(script, "authz ch")
    assert "completion" in complete(script, "authz compl")
    assert "--request" in complete(script, "authz check --req")
    assert {"bash", "zsh"} <= set(complete(script, "authz completion "))


def test_zsh_completion_is_valid_zsh(tmp_path: Path) -> None:
    text = run_authz("completion", "zsh").stdout
    assert text.startswith("#compdef authz")
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh not installed: generated script not syntax-checked")
    (tmp_path / "_authz").write_text(text)
    done = subprocess.run([zsh, "-n", str(tmp_path / "_authz")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


QUESTION = {"org_id": "acme-eu", "user": "u-fiona", "action": "create", "module": "invoices",
            "record": {"total": 20000}, "write_fields": ["discount"]}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_check_reads_a_request_file(server: ServerProc, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"question{suffix}"
    path.write_text(json.dumps(QUESTION))  # JSON is YAML too; the suffix picks the parser
    done = run_authz("check", "--server", server.address, "--request", str(path), "--json",
                     check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["allowed"] and result["approval"]["outcome"] == "pending_approval"
    # A flag overrides the file: Sam may not write the discount.
    done = run_authz("check", "--server", server.address, "--request", str(path),
                     "--user", "u-sam", check=False)
    assert done.returncode == 1 and "discount (read only)" in done.stdout


def test_request_file_mistakes_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "q.yaml"
    bad.write_text("org_id: acme-eu\nuser: u-sam\nacton: view\nmodule: invoices\n")
    done = run_authz("check", "--request", str(bad), check=False)
    assert done.returncode == 2
    assert "acton: unknown field" in done.stderr and "action" in done.stderr
    bad.write_text("org_id: acme-eu\nuser: u-sam\naction: view\nmodule: invoices\n"
                   "record: {total: lots}\n")
    done = run_authz("check", "--request", str(bad), check=False)
    assert done.returncode == 2 and "record.total: 'lots' is not a number" in done.stderr
    done = run_authz("check", "--request", str(tmp_path / "missing.yaml"), check=False)
    assert done.returncode == 2 and "missing.yaml: No such file" in done.stderr


def test_newcomer_messages() -> None:
    done = run_authz("check", check=False)
    assert done.returncode == 2
    assert "missing --org, --user, --action, --module" in done.stderr
    assert "authz check --org acme-eu" in done.stderr  # an example to copy
    port = free_port()  # nothing listens there
    done = run_authz("check", "--server", f"127.0.0.1:{port}", "--deadline", "0.5",
                     "--org", "acme-eu", "--user", "u-sam", "--action", "view",
                     "--module", "invoices", check=False)
    assert done.returncode == 3
    assert "no authz server answered" in done.stderr and "make serve" in done.stderr
    helptext = subprocess.run([AUTHZ, "check", "--help"], capture_output=True, text=True).stdout
    assert "examples:" in helptext and "--request question.yaml" in helptext
