"""`authz org create` end to end (DOMAIN §6: new sign-ups start unified, integration users
available at set-up), then a real server decides for the new organization."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc
from tests.e2e.serverproc import REPO, run_authz, start_server

DIRECTORY = """\
org: newco-eu
crm_users:
  - {id: boss, email: boss@newco.example, name: Bo Boss, admin: true}
  - {id: ann, email: ann@newco.example, name: Ann Ames}
  - {id: bob, email: bob@newco.example, name: Bob Bell}
books_users:
  - {id: "901", email: boss@newco.example, name: Bo Boss, role: admin}
"""


def test_a_new_organization_is_unified_from_set_up(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "authz/policies", root)
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    run_authz("db", "upgrade", "--db", url)
    directory = tmp_path / "newco.yaml"
    directory.write_text(DIRECTORY)

    refused = run_authz("org", "create", "--org", "usco", "--data-centre", "US", "--edition",
                        "enterprise", "--admin", "boss", "--admin-email", "b@us.example",
                        "--root", str(root), "--db", url, check=False)
    assert refused.returncode == 2 and "not yet released to US enterprise" in refused.stderr
    assert not (root / "orgs/usco").exists() and not (root / "generated/orgs/usco.json").exists()

    out = run_authz("org", "create", "--org", "newco-eu", "--name", "NewCo", "--admin", "boss",
                    "--directory", str(directory), "--integration-user", "ann",
                    "--root", str(root), "--db", url).stdout
    assert "newco-eu: signed up unified (no migration window); 1 integration user(s) added" in out
    assert (root / "orgs/newco-eu/organization.yaml").is_file()

    server = start_server(tmp_path, url, "--policy-dir", str(root / "generated"),
                          env={"AUTHZ_MIGRATION_AUTO_INTERVAL": "0"})
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = authz_pb2_grpc.AuthzServiceStub(ch)

            def check(user: str, rev: int = 0) -> pb.CheckResponse:
                r: pb.CheckResponse = stub.Check(pb.CheckRequest(
                    org_id="newco-eu", user=user, action="create", module="estimates",
                    min_revision=rev), timeout=5)
                return r

            ann = check("ann")
            assert (ann.decision, ann.mode) == (pb.DECISION_ALLOW, pb.MODE_UNIFIED), ann.message
            assert ann.identity.integration_user_id == "iu-ann"
            assert check("bob").reason == pb.REASON_NOT_MIGRATED  # unified: no borrowed rights
            boss = check("boss")
            assert boss.decision == pb.DECISION_ALLOW and boss.identity.books_user_id == "901"
            preview = stub.Migrate(pb.MigrateRequest(org_id="newco-eu", caller="boss"), timeout=5)
            assert preview.mode == pb.MODE_UNIFIED and preview.window_ends == ""
            resp = stub.Migrate(pb.MigrateRequest(org_id="newco-eu", caller="boss",
                                                  mode=pb.MIGRATE_MODE_APPLY, crm_user_ids=["bob"],
                                                  request_key="later"), timeout=5)
            job = list(stub.WatchMigrationJob(pb.GetMigrationJobRequest(
                org_id="newco-eu", job_id=resp.job_id), timeout=20))[-1]
            assert check("bob", job.directory_revision).identity.integration_user_id == "iu-bob"
    finally:
        assert server.stop() == 0, server.log()
