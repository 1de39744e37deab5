"""ImportDirectory and `authz directory import` check the users against the organization's
policy (issue 11 item 8, issue 12 item 2): unknown roles, unconnected products, unknown
fields and keys are refused naming user and field (file:line for files), with nothing
imported; `replace` removes users; assigned customers decide the record scope."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from authz.v1 import authz_pb2 as pb
from authz_client import AuthzClient, AuthzRpcError
from tests.e2e.serverproc import REPO, ServerProc, run_authz
from tests.e2e.test_ops import _import_request

# Tests that change a directory use initech-in, which no other test of the session server
# reads (acme-eu's revision is asserted elsewhere).
INITECH = REPO / "authz/policies/orgs/initech-in/tests/directory.yaml"


def _globex(*extra_books: pb.FinanceUser) -> pb.ImportDirectoryRequest:
    req = pb.ImportDirectoryRequest(org_id="globex-us")
    req.crm_users.add(id="u-hank", email="hank@globex.example", name="Hank Scorpio", is_admin=True)
    req.crm_users.add(id="u-homer", email="homer@globex.example", name="Homer Simpson")
    req.books_users.add(user_id="460000000000101", email="hank@globex.example", name="Hank Scorpio",
                        role_id="admin")
    req.books_users.extend(extra_books)
    return req


def _refused(client: AuthzClient, req: pb.ImportDirectoryRequest) -> AuthzRpcError:
    with pytest.raises(AuthzRpcError) as info:
        client.import_directory(req)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value


def test_an_unknown_role_is_refused_naming_user_and_field_and_nothing_is_imported(
        client: AuthzClient) -> None:
    before = client.import_directory(_globex())
    req = _globex(pb.FinanceUser(user_id="b-homer", email="homer@globex.example",
                                 name="Homer Simpson", role_id="colections"))
    err = _refused(client, req)
    assert [v.field for v in err.violations] == ["books_users[1].role_id"]
    assert "b-homer" in err.violations[0].description
    assert "'colections'" in err.violations[0].description
    assert "460000000000051 (Collections)" in err.violations[0].description  # what would fit
    r = client.check("globex-us", "u-homer", "view", "invoices", min_revision=before)
    assert r.directory_revision == before  # nothing imported


def test_a_product_the_organization_does_not_connect_is_refused(client: AuthzClient) -> None:
    req = _globex()
    req.subscriptions_users.add(user_id="s-homer", email="homer@globex.example", name="Homer",
                                role_id="admin")
    err = _refused(client, req)
    assert [v.field for v in err.violations] == ["subscriptions_users[0]"]
    assert "does not connect subscriptions" in err.violations[0].description


def test_every_violation_is_named_at_once(client: AuthzClient) -> None:
    req = _globex(pb.FinanceUser(user_id="b-x", email="x@globex.example", role_id="nope"),
                  pb.FinanceUser(user_id="b-y", email="y@globex.example", role_id="staf"))
    err = _refused(client, req)
    assert [v.field for v in err.violations] == ["books_users[1].role_id", "books_users[2].role_id"]


def test_unknown_fields_are_refused_not_dropped(server: ServerProc) -> None:
    body = _globex().SerializeToString() + b"\xf8\x01\x01"  # field 31, varint 1
    inner = pb.CrmUser(id="u-z", email="z@globex.example").SerializeToString() + b"\xa0\x06\x01"
    nested = pb.ImportDirectoryRequest(org_id="globex-us").SerializeToString() + (
        b"\x12" + bytes([len(inner)]) + inner)  # crm_users[0] with field 100
    with grpc.insecure_channel(server.address) as ch:
        call = ch.unary_unary("/authz.v1.AuthzService/ImportDirectory",
                              response_deserializer=pb.ImportDirectoryResponse.FromString)
        for raw, field in ((body, "ImportDirectoryRequest"), (nested, "crm_users[0]")):
            with pytest.raises(grpc.RpcError) as info:
                call(raw, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith(f"{field}: unknown field number")


def test_replace_removes_a_user(client: AuthzClient) -> None:
    full = _import_request(INITECH)
    more = pb.ImportDirectoryRequest()
    more.CopyFrom(full)
    more.crm_users.add(id="u-max", email="max@initech.example", name="Max Mohr")
    more.books_users.add(user_id="982000000000199", email="max@initech.example", name="Max Mohr",
                         role_id="staff")
    rev = client.import_directory(more)
    r = client.check("initech-in", "u-max", "view", "invoices", min_revision=rev)
    assert r.allowed and r.identity.books_user_id == "982000000000199"
    assert client.import_directory(full) == rev  # upsert: Max stays
    full.replace = True
    removed = client.import_directory(full)
    assert removed == rev + 1
    r = client.check("initech-in", "u-max", "view", "invoices", min_revision=removed)
    assert (r.allowed, r.reason) == (False, "user_unknown")


def test_assigned_customers_decide_the_scope_of_a_scoped_user(client: AuthzClient) -> None:
    req = _import_request(INITECH)  # with its integration user: the organization is unified
    req.crm_users.add(id="u-sia", email="sia@initech.example", name="Sia Kurz")
    req.books_users.add(user_id="982000000000198", email="sia@initech.example", name="Sia Kurz",
                        role_id="staff_assigned", assigned_customers=["c-77", "c-78"])
    rev = client.import_directory(req)

    def check(**record: str) -> tuple[bool, str, str]:
        from authz_client import Record
        r = client.check("initech-in", "u-sia", "view", "invoices", record=Record(**record),
                         min_revision=rev)
        return r.allowed, r.reason, r.message

    assert check(customer_id="c-77", owner="u-sam")[:2] == (True, "granted")
    assert check(owner="u-sia")[:2] == (True, "granted")
    allowed, reason, message = check(customer_id="c-99")
    assert (allowed, reason) == (False, "out_of_scope") and "c-99" in message
    allowed, reason, message = check()
    assert (allowed, reason) == (False, "out_of_scope")
    assert "record.customer_id" in message and "record.owner" in message


def test_directory_file_errors_name_file_line_and_nothing_is_imported(
        tmp_path: Path, db_url: str) -> None:
    bad = tmp_path / "globex.yaml"
    bad.write_text("org: globex-us\n"
                   "crm_users:\n"
                   "  - {id: u-hank, email: hank@globex.example, admin: true}\n"
                   "books_users:\n"
                   "  - {id: b-hank, email: hank@globex.example, role: admn}\n"
                   "  - {id: b-x, email: x@globex.example, role: admin, rol: staff}\n"
                   "subscriptions_users:\n"
                   "  - {id: s-x, email: x@globex.example, role: admin}\n")
    out = run_authz("directory", "import", "--db", db_url, str(bad), check=False)
    assert out.returncode == 2, out.stdout
    assert f"{bad}:6:" in out.stderr and "unknown key 'rol'" in out.stderr
    assert "nothing imported" in out.stderr
    bad.write_text(bad.read_text().replace(", rol: staff", ""))
    out = run_authz("directory", "import", "--db", db_url, str(bad), check=False)
    assert out.returncode == 2
    assert f"{bad}:5:" in out.stderr and "unknown books role" in out.stderr and "'admn'" in out.stderr
    assert f"{bad}:8:" in out.stderr and "does not connect subscriptions" in out.stderr


def test_directory_file_with_assigned_customers_imports(tmp_path: Path, db_url: str) -> None:
    good = tmp_path / "initech.yaml"
    good.write_text("org: initech-in\n"
                    "crm_users:\n  - {id: u-kai, email: kai@initech.example}\n"
                    "books_users:\n  - {id: '7', email: kai@initech.example, role: staff_assigned,"
                    " assigned_customers: [c-1, c-2]}\n")
    out = run_authz("directory", "import", "--db", db_url, str(good), check=False)
    assert out.returncode == 0, out.stderr


def test_import_directory_over_the_quota_is_refused_and_nothing_imported(
        client: AuthzClient, db_url: str) -> None:
    """Issue 11 item 8: ImportDirectory enforced no quota. The operator lowers initech-in's
    to its one integration user; a second one is refused, naming the field, and the
    directory stays as it was."""
    policy = str(REPO / "authz/policies/generated")

    def quota(n: int) -> None:
        run_authz("migrate", "quota", "--db", db_url, "--policy-dir", policy,
                  "--org", "initech-in", "--set", str(n), "--operator", "test", "--reason", "t")

    req = _import_request(INITECH)
    before = client.import_directory(req)
    quota(1)
    try:
        req.crm_users.add(id="u-zoe", email="zoe@initech.example", name="Zoe")
        req.integration_users.add(crm_user_id="u-zoe", integration_user_id="iu-zoe")
        err = _refused(client, req)
        assert [v.field for v in err.violations] == ["integration_users"]
        assert "quota of 1" in err.violations[0].description
        r = client.check("initech-in", "u-zoe", "view", "invoices", min_revision=before)
        assert (r.directory_revision, r.reason) == (before, "user_unknown")  # nothing imported
    finally:
        quota(1000)
