"""The Node.js example (examples/node: @grpc/grpc-js + @grpc/proto-loader, loading
proto/ at run time) installed with `npm ci` from its committed lock file, calling Check
on a real server: allow, deny, and a refused request, with `authz check`'s exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.e2e.serverproc import REPO, ServerProc

EXAMPLE = REPO / "examples" / "node"


@pytest.fixture(scope="module")
def node_example() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("NODE EXAMPLE SKIPPED: node/npm not installed")
    try:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("NODE EXAMPLE SKIPPED: `npm ci` timed out (npm registry unreachable?)")
    if done.returncode != 0:
        if any(s in done.stderr for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED",
                                           "ETIMEDOUT", "network")):
            pytest.skip(f"NODE EXAMPLE SKIPPED: npm registry unreachable:\n{done.stderr[-500:]}")
        pytest.fail(f"npm ci failed:\n{done.stderr}")
    return node


def run(node: str, server: ServerProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, "check.js", "--server", server.address, "--org", "acme-eu",
                           *args], cwd=EXAMPLE, capture_output=True, text=True, timeout=60)


def test_node_check_allow(node_example: str, server: ServerProc) -> None:
    done = run(node_example, server, "--user", "u-fiona", "--action", "create",
               "--module", "invoices", "--total", "20000")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["decision"] == "DECISION_ALLOW"
    assert answer["identity"]["books_user_id"] == "b-fiona"
    assert answer["approval"]["outcome"] == "APPROVAL_OUTCOME_PENDING_APPROVAL"
    # int64 as a string, no precision loss (its value depends on the tests run before)
    assert isinstance(answer["directory_revision"], str) and answer["directory_revision"].isdigit()


def test_node_check_deny(node_example: str, server: ServerProc) -> None:
    done = run(node_example, server, "--user", "u-sam", "--action", "create",
               "--module", "invoices", "--total", "20000", "--write-field", "discount")
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reason"] == "REASON_FIELD_NOT_WRITABLE"
    assert "discount" in answer["message"]


def details(stderr: str) -> list[dict[str, object]]:
    """The google.rpc details the example decoded from grpc-status-details-bin."""
    line = next(x for x in stderr.splitlines() if x.startswith("details: "))
    decoded: list[dict[str, object]] = json.loads(line.removeprefix("details: "))
    return decoded


def test_node_check_refused_request(node_example: str, server: ServerProc) -> None:
    done = run(node_example, server, "--user", "u-sam", "--action", "view",
               "--module", "bananas")
    assert done.returncode == 2
    assert "INVALID_ARGUMENT" in done.stderr and "bananas" in done.stderr
    # BadRequest decoded with third_party/googleapis/google/rpc/error_details.proto.
    assert "  field module: unknown module 'bananas'" in done.stderr.splitlines()
    assert details(done.stderr) == [{"@type": "google.rpc.BadRequest", "field_violations": [
        {"field": "module", "description": "unknown module 'bananas'"}]}]


def test_node_reads_nested_field_names(node_example: str, server: ServerProc) -> None:
    done = run(node_example, server, "--user", "u-sam", "--action", "edit",
               "--module", "invoices", "--write-field", "not a field")
    assert done.returncode == 2
    [bad] = details(done.stderr)
    assert bad["@type"] == "google.rpc.BadRequest"
    assert [v["field"] for v in bad["field_violations"]] == ["write_fields"]  # type: ignore[attr-defined]


def test_node_attribute_error_info(node_example: str, server: ServerProc) -> None:
    """Attribute refuses a disabled CRM user with google.rpc.ErrorInfo (reason, domain)."""
    done = run(node_example, server, "--user", "u-olga", "--action", "view",
               "--module", "invoices", "--attribute")
    assert done.returncode == 1, done.stderr
    assert "PERMISSION_DENIED" in done.stderr
    assert "  reason CRM_USER_DISABLED (authz.v1)" in done.stderr.splitlines()
    assert details(done.stderr) == [{"@type": "google.rpc.ErrorInfo",
                                     "reason": "CRM_USER_DISABLED", "domain": "authz.v1"}]
    done = run(node_example, server, "--user", "u-ivy", "--action", "view",
               "--module", "invoices", "--attribute")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["identity"]["integration_user_id"] == "iu-ivy"
    done = run(node_example, server, "--user", "u-sam", "--action", "view",  # per product
               "--module", "invoices", "--product", "subscriptions", "--attribute")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["act_as"] == "s-sam"
