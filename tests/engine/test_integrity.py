"""The seal at the loader's level: what a load refuses, file named, before any row is used,
including a policy whose seal was regenerated over rows that lost a restriction table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from authz.engine.engine import DEFAULT_POLICY_DIR, PolicySet
from authz.engine.index import load_org
from authz.errors import PolicyUnavailable, UnknownOrganization
from authz.policy import integrity
from authz.policy.compiler import MODEL_CONF

ORG = "acme-eu"


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    out = tmp_path / "generated"
    shutil.copytree(DEFAULT_POLICY_DIR, out)
    return out


def reseal_without(gen: Path, kind: str) -> None:
    """What a tool that rewrites compiled files (and re-seals them, revision and all) would
    leave if it dropped every row of one kind: every digest is right, a table is gone."""
    orgs = gen / "orgs"
    text = (orgs / f"{ORG}.csv").read_text()
    manifest = json.loads((orgs / f"{ORG}.json").read_text())
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith(f"{kind},")]
    head = [ln for ln in lines if ln.startswith("#")]
    body = "".join(ln for ln in lines if not ln.startswith("#"))
    settings = {k: v for k, v in manifest.items() if k not in ("revision", "sources")}
    rev = integrity.revision_of(MODEL_CONF, body, settings)
    old = manifest["revision"]
    csv = ("".join(head).replace(old, rev) + body).encode()
    manifest["revision"] = rev
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    (orgs / f"{ORG}.csv").write_bytes(csv)
    (orgs / f"{ORG}.json").write_bytes(data)
    (orgs / f"{ORG}.seal").write_bytes(integrity.seal(ORG, rev, MODEL_CONF, csv, data))


@pytest.mark.parametrize(("kind", "problem"), [
    ("p2", "field rules of books/"),
    ("p3", "approvers of books/"),
    ("p4", "p4 row is missing"),
])
def test_a_missing_restriction_table_is_never_no_restriction(gen: Path, kind: str,
                                                             problem: str) -> None:
    reseal_without(gen, kind)
    with pytest.raises(integrity.PolicyIntegrityError) as err:
        load_org(gen, ORG)
    assert problem in str(err.value) and err.value.file.endswith(f"{ORG}.csv")


def test_the_revision_is_recomputed_from_what_was_read(gen: Path) -> None:
    """A re-sealed manifest whose settings were edited (self-approval switched on) but
    whose revision was kept: the seal agrees, the revision does not."""
    orgs = gen / "orgs"
    manifest = json.loads((orgs / f"{ORG}.json").read_text())
    manifest["allow_self_approval"] = True
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    csv = (orgs / f"{ORG}.csv").read_bytes()
    (orgs / f"{ORG}.json").write_bytes(data)
    (orgs / f"{ORG}.seal").write_bytes(integrity.seal(ORG, manifest["revision"], MODEL_CONF,
                                                      csv, data))
    with pytest.raises(integrity.PolicyIntegrityError, match="do not make revision"):
        load_org(gen, ORG)


def test_a_half_written_organization_is_unavailable_not_unknown(gen: Path) -> None:
    (gen / "orgs" / f"{ORG}.json").unlink()  # the seal landed, the manifest did not
    policies = PolicySet(gen)
    assert ORG in policies.org_ids()
    with pytest.raises(PolicyUnavailable) as err:
        policies.get(ORG)
    assert f"{ORG}.json" in str(err.value) and "/" not in err.value.public
    assert ORG in policies.broken()
    with pytest.raises(UnknownOrganization):
        policies.get("no-such-org")
    assert policies.get("globex-us").org_id == "globex-us"  # others unaffected


def test_compiled_policy_verifies(gen: Path) -> None:
    for org in PolicySet(gen).org_ids():
        assert load_org(gen, org).org_id == org


def test_policy_verify_names_each_file_that_does_not_verify(gen: Path) -> None:
    from tests.policy.test_compile import authz

    n = len(PolicySet(gen).org_ids())
    ok = authz("policy", "verify", "--policy-dir", str(gen))
    assert ok.returncode == 0 and f"{n} organizations verify" in ok.stdout
    csv = gen / "orgs" / f"{ORG}.csv"
    csv.write_bytes(csv.read_bytes()[:-100])  # cut short
    bad = authz("policy", "verify", "--policy-dir", str(gen))
    assert bad.returncode == 1
    assert f"error: {csv}: cut short" in bad.stderr and f"1 of {n} organizations" in bad.stderr
