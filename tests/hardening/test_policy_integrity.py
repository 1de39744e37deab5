"""Policy integrity against a real server: a compiled file cut short, reordered, or swapped
for another organization's or an older revision's is refused at start (exit non-zero,
the file named) and on reload (the last good revision keeps serving, reported in log,
health and metrics); a cold organization whose files do not verify answers UNAVAILABLE
with ErrorInfo POLICY_UNVERIFIED for itself alone, never INTERNAL, never failing the
other items of a CheckBatch.

The attack each test stands for: before the seal, a truncated CSV kept its header (and so
its revision) and lost its field masks and approval blocks, and was served as if whole.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.wrappers_pb2 import DoubleValue
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.engine.engine import DEFAULT_POLICY_DIR
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from tests.e2e.serverproc import ServerProc, free_port, seed, start_server
from tests.hardening.policyfiles import publish, renamed, reorder, revision_of, truncate, variant
from tests.hardening.test_reload import wait_for

ORG = "acme-eu"


def _older_csv(gen: Path) -> None:
    """acme-eu's CSV from another compile (its last field rule removed): a mixed folder."""
    other = variant(lambda o: dataclasses.replace(o, fields=o.fields[:-1]))
    (gen / "orgs" / f"{ORG}.csv").write_bytes(other[f"orgs/{ORG}.csv"])


def _older_manifest(gen: Path) -> None:
    (gen / "orgs" / f"{ORG}.json").write_bytes(renamed("Acme (old)")[f"orgs/{ORG}.json"])


def _other_orgs_csv(gen: Path) -> None:
    shutil.copyfile(gen / "orgs" / "globex-us.csv", gen / "orgs" / f"{ORG}.csv")


def _other_orgs_files(gen: Path) -> None:
    """All three of globex-us's files under acme-eu's names: each verifies against the
    other, but not for acme-eu."""
    for ext in (".csv", ".json", ".seal"):
        shutil.copyfile(gen / "orgs" / f"globex-us{ext}", gen / "orgs" / f"{ORG}{ext}")


# name -> (how the files go wrong, the file the refusal names)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "csv_truncated": (lambda g: truncate(g / "orgs" / f"{ORG}.csv"), f"{ORG}.csv"),
    "csv_reordered": (lambda g: reorder(g / "orgs" / f"{ORG}.csv"), f"{ORG}.csv"),
    "csv_of_older_revision": (_older_csv, f"{ORG}.csv"),
    "csv_of_other_org": (_other_orgs_csv, f"{ORG}.csv"),
    "manifest_truncated": (lambda g: truncate(g / "orgs" / f"{ORG}.json"), f"{ORG}.json"),
    "manifest_of_older_revision": (_older_manifest, f"{ORG}.json"),
    "seal_missing": (lambda g: (g / "orgs" / f"{ORG}.seal").unlink(), f"{ORG}.seal"),
    "other_orgs_files": (_other_orgs_files, f"{ORG}.seal"),
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("integrity-db") / "authz.db"
    url = f"sqlite:///{db}"
    seed(url)
    return url


def _copy(tmp_path: Path) -> Path:
    gen = tmp_path / "generated"
    shutil.copytree(DEFAULT_POLICY_DIR, gen)
    return gen


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_start_refuses_a_file_that_does_not_verify(tmp_path: Path, seeded: str,
                                                   damage: str) -> None:
    gen = _copy(tmp_path)
    spoil, named = DAMAGE[damage]
    spoil(gen)
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen), wait=False)
    try:
        code = server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.stop()
        raise AssertionError(f"server started on a damaged policy ({damage})") from None
    assert code != 0
    log = server.log()
    assert '"start_failed"' in log and named in log, log[-2000:]


def _stub(server: ServerProc) -> Iterator[pb_grpc.AuthzServiceStub]:
    with grpc.insecure_channel(server.address) as ch:
        yield pb_grpc.AuthzServiceStub(ch)


# Sam (a sales rep) must not write the discount (read only for his role), and the
# invoice he saves must wait for approval: the restrictions a cut-short file loses.
SAM_DISCOUNT = pb.CheckRequest(org_id=ORG, user="u-sam", action="create", module="invoices",
                               record=pb.Record(total=DoubleValue(value=20000)), write_fields=["discount"])


@pytest.mark.parametrize("damage", ["csv_truncated", "csv_reordered", "csv_of_older_revision",
                                    "csv_of_other_org", "manifest_truncated", "seal_missing"])
def test_reload_keeps_the_last_good_revision(tmp_path: Path, seeded: str, damage: str) -> None:
    gen = _copy(tmp_path)
    good = revision_of(gen)
    metrics = free_port()
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen), "--reload-interval", "0.1",
                          "--metrics-listen", f"127.0.0.1:{metrics}")
    try:
        assert server.health("authz.policy") == 1
        DAMAGE[damage][0](gen)
        wait_for(lambda: server.health("authz.policy") == 2)  # NOT_SERVING: reported
        for stub in _stub(server):
            r = stub.Check(SAM_DISCOUNT, timeout=5)
            assert r.policy_revision == good
            assert r.decision == pb.DECISION_DENY and r.reason == pb.REASON_FIELD_NOT_WRITABLE
        assert server.health("") == 1  # decisions still served, from the last good revision
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5
                                      ).read().decode()
        assert f'authz_policy_reload_failing{{org_id="{ORG}"}} 1.0' in text
        log = server.log()
        assert '"policy_reload_failed"' in log and DAMAGE[damage][1] in log
        publish(gen, renamed("Acme Europe (fixed)"))  # the fix lands: served again
        wait_for(lambda: server.health("authz.policy") == 1)
        for stub in _stub(server):
            assert stub.Check(SAM_DISCOUNT, timeout=5).policy_revision == revision_of(gen)
    finally:
        assert server.stop() == 0


def _unverified(status_code: int, message: str, details: list[object]) -> None:
    assert status_code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert "/" not in message and ".csv" not in message  # no path, no file detail to clients
    infos = []
    for d in details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):  # type: ignore[attr-defined]
            infos.append(info)
    assert [(i.reason, i.metadata["org_id"]) for i in infos] == [("POLICY_UNVERIFIED", ORG)]


@pytest.mark.parametrize("damage", ["csv_truncated", "seal_missing", "csv_of_other_org"])
def test_a_cold_organization_that_does_not_verify_fails_alone(tmp_path: Path, seeded: str,
                                                              damage: str) -> None:
    gen = _copy(tmp_path)
    DAMAGE[damage][0](gen)
    # Not warmed: acme-eu is loaded on first use (as any organization past the cache is).
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen), "--reload-interval", "0.1",
                          env={"AUTHZ_WARM": "false"})
    try:
        for stub in _stub(server):
            for _ in range(2):  # the refusal is remembered, and stays the same
                with pytest.raises(grpc.RpcError) as err:
                    stub.Check(SAM_DISCOUNT, timeout=5)
                status = rpc_status.from_call(err.value)
                assert status is not None
                _unverified(status.code, status.message, list(status.details))
            batch = stub.CheckBatch(pb.CheckBatchRequest(requests=[
                pb.CheckRequest(org_id="globex-us", user="u-x", action="view", module="invoices"),
                SAM_DISCOUNT,
                pb.CheckRequest(org_id="globex-us", user="u-y", action="view", module="invoices"),
            ]), timeout=5)
            kinds = [r.WhichOneof("result") for r in batch.results]
            assert kinds == ["response", "error", "response"]
            err_status = batch.results[1].error
            _unverified(err_status.code, err_status.message, list(err_status.details))
        wait_for(lambda: server.health("authz.policy") == 2)
        assert server.health("") == 1
        assert '"policy_load_failed"' in server.log()
    finally:
        assert server.stop() == 0
