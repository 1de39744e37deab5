"""Keyed seals at the loader's level and in the CLI: a folder re-sealed by whoever can write
it (a real compile, digests all right) loads without a key and is refused with one; a
wrong key id, an edited MAC, rotation over two keys, and key files open to others."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.engine.engine import DEFAULT_POLICY_DIR, PolicySet
from authz.engine.index import load_org
from authz.policy import integrity, sealkey
from authz.policy.compiler import MODEL_CONF
from server.process import config
from tests.hardening.policyfiles import publish, variant

ORG = "acme-eu"


def authz(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    return subprocess.run([sys.executable, "-m", "authz_server.cli", *args],
                          capture_output=True, text=True, env={**clean, **(env or {})})


@pytest.fixture(autouse=True)
def no_key_after() -> Iterator[None]:
    """The requirement is process-wide: each test leaves the process as it found it."""
    yield
    sealkey.require(())


def make_key(folder: Path, name: str, mode: int = 0o600, secret: str = "") -> Path:
    path = folder / name
    path.write_text((secret or os.urandom(32).hex()) + "\n")
    path.chmod(mode)
    return path


def sign_folder(gen: Path, key: sealkey.PolicyKey) -> None:
    for seal in (gen / "orgs").glob("*" + integrity.SEAL_SUFFIX):
        seal.write_bytes(sealkey.sign(seal.read_bytes(), key))


def resealed(gen: Path) -> None:
    """acme-eu recompiled with its last field rule gone: what someone who can write the
    folder can publish (a real compile, unsigned)."""
    publish(gen, variant(lambda o: dataclasses.replace(o, fields=o.fields[:-1])))


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    out = tmp_path / "generated"
    shutil.copytree(DEFAULT_POLICY_DIR, out)
    return out


@pytest.fixture
def k1(tmp_path: Path) -> sealkey.PolicyKey:
    return sealkey.read_key(make_key(tmp_path, "k1"))


@pytest.fixture
def k2(tmp_path: Path) -> sealkey.PolicyKey:
    return sealkey.read_key(make_key(tmp_path, "k2"))


def refusal(gen: Path) -> integrity.PolicyIntegrityError:
    with pytest.raises(integrity.PolicyIntegrityError) as err:
        load_org(gen, ORG)
    assert err.value.file == str(gen / "orgs" / f"{ORG}.seal")
    return err.value


def test_a_resealed_folder_loads_without_a_key_and_is_refused_with_one(
        gen: Path, k1: sealkey.PolicyKey) -> None:
    sign_folder(gen, k1)
    good = load_org(gen, ORG).revision
    sealkey.require([k1])
    assert load_org(gen, ORG).revision == good  # signed by the pipeline: accepted
    resealed(gen)
    sealkey.require(())
    assert load_org(gen, ORG).revision != good  # no key: the digests agree, it loads
    sealkey.require([k1])
    assert "not signed" in refusal(gen).problem
    policies = PolicySet(gen)  # an organization loaded on first use: the same refusal
    with pytest.raises(integrity.PolicyIntegrityError):
        policies.get(ORG)
    assert "not signed" in policies.broken()[ORG]


def test_a_seal_signed_with_another_key_is_refused_naming_its_key_id(
        gen: Path, k1: sealkey.PolicyKey, k2: sealkey.PolicyKey) -> None:
    sign_folder(gen, k2)
    sealkey.require([k1])
    problem = refusal(gen).problem
    assert f"signed with key id {k2.key_id}, not one of the keys given ({k1.key_id})" in problem


def test_a_seal_edited_after_signing_is_refused(gen: Path, k1: sealkey.PolicyKey) -> None:
    sign_folder(gen, k1)
    seal = gen / "orgs" / f"{ORG}.seal"
    signed = json.loads(seal.read_bytes())
    resealed(gen)  # new digests, revision ...
    body = json.loads(seal.read_bytes())
    body["mac"] = signed["mac"]  # ... under the old, valid-looking signature
    seal.write_text(json.dumps(body, indent=2) + "\n")
    sealkey.require([k1])
    assert "signature does not match key id " + k1.key_id in refusal(gen).problem


def test_rotation_accepts_either_of_two_keys(gen: Path, k1: sealkey.PolicyKey,
                                             k2: sealkey.PolicyKey) -> None:
    sealkey.require([k2, k1])  # the new key first, the old one still accepted
    sign_folder(gen, k1)
    assert load_org(gen, ORG).org_id == ORG
    sign_folder(gen, k2)  # re-signed (sign replaces the MAC)
    assert integrity.verify(gen / "orgs", ORG, MODEL_CONF).signed_by == k2.key_id
    sign_folder(gen, k1)
    sealkey.require([k2])  # the old key retired: its seals no longer load
    assert f"signed with key id {k1.key_id}" in refusal(gen).problem


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = make_key(tmp_path, "key", mode)
    with pytest.raises(sealkey.KeyFileError) as err:
        sealkey.read_key(path)
    assert str(path) in str(err.value) and f"permissions {mode:04o} are too open" in str(err.value)
    assert path.read_text().strip() not in str(err.value)


def test_a_short_or_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sealkey.KeyFileError, match="at least 32"):
        sealkey.read_key(make_key(tmp_path, "short", secret="hunter2"))
    with pytest.raises(sealkey.KeyFileError, match="cannot open"):
        sealkey.read_key(tmp_path / "absent")


def test_the_secret_never_shows(k1: sealkey.PolicyKey, gen: Path) -> None:
    secret = k1.secret.decode()
    assert secret not in repr(k1) and secret not in str(k1)
    sign_folder(gen, k1)
    assert secret not in (gen / "orgs" / f"{ORG}.seal").read_text()


def test_server_setting_from_env_flags_and_file(tmp_path: Path) -> None:
    cfg = config.load(environ={"AUTHZ_POLICY_KEY_FILE": "/k/new, /k/old"})
    assert cfg.policy_key_file == ("/k/new", "/k/old")
    toml = tmp_path / "authz.toml"
    toml.write_text('[server]\npolicy_key_file = ["/k/a", "/k/b"]\n')
    assert config.load(environ={}, config_file=toml).policy_key_file == ("/k/a", "/k/b")
    open_key = make_key(tmp_path, "open", 0o644)
    with pytest.raises(config.ConfigError, match="too open"):
        config.policy_keys(config.load({"policy_key_file": str(open_key)}, environ={}))


def test_cli_compile_signs_and_verify_reports(tmp_path: Path) -> None:
    key = make_key(tmp_path, "release.key")
    key_id = sealkey.read_key(key).key_id
    out = tmp_path / "out"
    done = authz("policy", "compile", "--out", str(out), "--policy-key-file", str(key))
    assert done.returncode == 0 and f"signed with key id {key_id}" in done.stdout
    plain = authz("policy", "verify", "--policy-dir", str(out))
    assert plain.returncode == 0 and "MAC unchecked" in plain.stdout
    keyed = authz("policy", "verify", "--policy-dir", str(out),
                  env={"AUTHZ_POLICY_KEY_FILE": str(key)})
    assert keyed.returncode == 0 and f"signed with key id {key_id}: MAC valid" in keyed.stdout
    other = make_key(tmp_path, "other.key")
    wrong = authz("policy", "verify", "--policy-dir", str(out), "--policy-key-file", str(other))
    seal = out / "orgs" / f"{ORG}.seal"
    assert wrong.returncode == 1
    assert f"error: {seal}: signed with key id {key_id}, not one of the keys given" in wrong.stderr
    resealed(out)
    bad = authz("policy", "verify", "--policy-dir", str(out), "--policy-key-file", str(key))
    assert bad.returncode == 1 and f"error: {seal}: not signed" in bad.stderr
    key.chmod(0o644)
    refused = authz("policy", "compile", "--out", str(out), "--policy-key-file", str(key))
    assert refused.returncode == 2
    assert f"policy key file {key}: permissions 0644 are too open" in refused.stderr
    assert key.read_text().strip() not in refused.stderr + refused.stdout
