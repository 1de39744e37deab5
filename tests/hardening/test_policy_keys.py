"""Keyed seals against a real server: a policy folder re-sealed by whoever can write it (a
real compile, every digest right, no MAC) is served by a server without a key, and refused
by one started with `--policy-key-file` on the same paths as any integrity failure: exit
at start naming the seal, the last good revision kept on reload, POLICY_UNVERIFIED for an
organization loaded on first use. A key file others may read stops the start."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from authz.engine.engine import DEFAULT_POLICY_DIR
from authz.policy import integrity, sealkey
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc as pb_grpc
from tests.e2e.serverproc import ServerProc, run_authz, seed, start_server
from tests.hardening.policyfiles import publish, renamed, revision_of, variant
from tests.hardening.test_policy_integrity import SAM_DISCOUNT, _unverified
from tests.hardening.test_reload import wait_for

ORG = "acme-eu"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("keys-db") / "authz.db"
    url = f"sqlite:///{db}"
    seed(url)
    return url


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "release.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


def signed(files: dict[str, bytes], key: Path) -> dict[str, bytes]:
    """Compiled files as the release pipeline writes them: every seal signed."""
    k = sealkey.read_key(key)
    return {rel: sealkey.sign(data, k) if rel.endswith(integrity.SEAL_SUFFIX) else data
            for rel, data in files.items()}


def signed_copy(tmp_path: Path, key: Path) -> Path:
    gen = tmp_path / "generated"
    shutil.copytree(DEFAULT_POLICY_DIR, gen)
    for seal in (gen / "orgs").glob("*" + integrity.SEAL_SUFFIX):
        seal.write_bytes(signed({seal.name: seal.read_bytes()}, key)[seal.name])
    return gen


def resealed(key: Path) -> dict[str, bytes]:
    """acme-eu recompiled without its last field rule by someone without the key (the
    other organizations left as the pipeline signed them)."""
    files = variant(lambda o: dataclasses.replace(o, fields=o.fields[:-1]))
    seal = f"orgs/{ORG}{integrity.SEAL_SUFFIX}"
    return {**signed(files, key), seal: files[seal]}


def _stub(server: ServerProc) -> Iterator[pb_grpc.AuthzServiceStub]:
    with grpc.insecure_channel(server.address) as ch:
        yield pb_grpc.AuthzServiceStub(ch)


def test_start_serves_a_resealed_folder_without_a_key_and_refuses_it_with_one(
        tmp_path: Path, seeded: str, key: Path) -> None:
    gen = signed_copy(tmp_path, key)
    publish(gen, resealed(key))
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen))
    try:
        for stub in _stub(server):  # no key: as before keys existed, the digests verify
            assert stub.Check(SAM_DISCOUNT, timeout=5).policy_revision == revision_of(gen)
    finally:
        assert server.stop() == 0
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen),
                          "--policy-key-file", str(key), wait=False)
    try:
        code = server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.stop()
        raise AssertionError("a keyed server started on an unsigned seal") from None
    log = server.log()
    assert code != 0
    assert '"start_failed"' in log and f"{ORG}.seal" in log and "not signed" in log, log[-2000:]
    assert key.read_text().strip() not in log


def test_reload_keeps_the_last_good_revision_on_a_resealed_folder(
        tmp_path: Path, seeded: str, key: Path) -> None:
    gen = signed_copy(tmp_path, key)
    good = revision_of(gen)
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen), "--reload-interval",
                          "0.1", env={"AUTHZ_POLICY_KEY_FILE": str(key)})
    try:
        assert server.health("authz.policy") == 1
        publish(gen, resealed(key))
        wait_for(lambda: server.health("authz.policy") == 2)  # NOT_SERVING: reported
        for stub in _stub(server):
            r = stub.Check(SAM_DISCOUNT, timeout=5)
            assert r.policy_revision == good
            assert r.decision == pb.DECISION_DENY and r.reason == pb.REASON_FIELD_NOT_WRITABLE
        log = server.log()
        assert '"policy_reload_failed"' in log and f"{ORG}.seal" in log and "not signed" in log
        publish(gen, signed(renamed("Acme Europe (signed)"), key))  # the pipeline's fix
        wait_for(lambda: server.health("authz.policy") == 1)
        for stub in _stub(server):
            assert stub.Check(SAM_DISCOUNT, timeout=5).policy_revision == revision_of(gen)
        assert key.read_text().strip() not in server.log()
    finally:
        assert server.stop() == 0


def test_a_cold_resealed_organization_is_unverified(tmp_path: Path, seeded: str,
                                                    key: Path) -> None:
    gen = signed_copy(tmp_path, key)
    publish(gen, resealed(key))
    server = start_server(tmp_path, seeded, "--policy-dir", str(gen), "--policy-key-file",
                          str(key), env={"AUTHZ_WARM": "false"})
    try:
        for stub in _stub(server):
            with pytest.raises(grpc.RpcError) as err:
                stub.Check(SAM_DISCOUNT, timeout=5)
            status = rpc_status.from_call(err.value)
            assert status is not None
            _unverified(status.code, status.message, list(status.details))
            other = pb.CheckRequest(org_id="globex-us", user="u-x", action="view",
                                    module="invoices")
            assert stub.Check(other, timeout=5).policy_revision  # still signed: served
        assert '"policy_load_failed"' in server.log()
    finally:
        assert server.stop() == 0


def test_a_key_file_others_may_read_stops_the_start(tmp_path: Path, key: Path) -> None:
    key.chmod(0o644)
    done = run_authz("serve", "--policy-key-file", str(key), check=False)
    assert done.returncode == 2
    assert f"policy key file {key}: permissions 0644 are too open" in done.stderr
    assert key.read_text().strip() not in done.stderr + done.stdout


def test_a_fifo_or_oversized_key_file_stops_the_start_without_waiting(tmp_path: Path) -> None:
    """A FIFO given as the key file was opened for reading, which waits for a writer for
    ever: `authz serve` and `authz policy verify` hung before printing anything (the run
    was killed by the 60 s bound). A regular file far larger than a secret was read whole
    and taken as a key."""
    fifo = tmp_path / "release.key"
    os.mkfifo(fifo, 0o600)
    for args in (("serve",), ("policy", "verify")):
        done = run_authz(*args, "--policy-key-file", str(fifo), check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert f"policy key file {fifo}: not a regular file" in done.stderr
    big = tmp_path / "big.key"
    big.write_text(os.urandom(32).hex() * 1000)
    big.chmod(0o600)
    done = run_authz("serve", "--policy-key-file", str(big), check=False)
    assert done.returncode == 2
    assert f"policy key file {big}: 64000 bytes, a key file holds one secret" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_file_owned_by_another_user_stops_the_start(tmp_path: Path, key: Path) -> None:
    """Mode 0600 says nothing when the file is someone else's: its owner (say, whoever
    writes the policy folder) reads the secret and signs with it. Was accepted before."""
    os.chown(key, 65534, 65534)
    done = run_authz("serve", "--policy-key-file", str(key), check=False)
    assert done.returncode == 2, done.stderr
    assert f"policy key file {key}: owned by uid 65534" in done.stderr
