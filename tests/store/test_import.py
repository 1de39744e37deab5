"""import_directory: one transaction, revisions only on change, clear rejections."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from authz.directory import CrmUser, FinanceUser, IntegrationUser
from authz.errors import InvalidArgument
from authz.store import Store, schema

from .conftest import ANNA, BOOKS_ANNA, IU_IVY, IVY, OLGA, ORG, SUBS_ANNA, crm


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_import_returns_revision_one_and_reimport_is_a_no_op(store: Store) -> None:
    args = (ORG, [ANNA, IVY, OLGA], [BOOKS_ANNA, SUBS_ANNA], [IU_IVY])
    assert store.revision(ORG) == 0
    assert store.import_directory(*args) == 1
    assert store.import_directory(*args) == 1
    assert store.import_directory(ORG, [IVY], [], [IU_IVY]) == 1  # a subset changes nothing either
    assert store.revision(ORG) == 1
    assert _count(store, schema.directory_revisions) == 1


def test_a_change_bumps_the_revision_once(store: Store) -> None:
    store.import_directory(ORG, [ANNA, IVY], [BOOKS_ANNA])
    renamed = CrmUser(IVY.id, IVY.email, "Ivy Novak")
    assert store.import_directory(ORG, [ANNA, renamed], [BOOKS_ANNA]) == 2
    assert store.import_directory(ORG, [ANNA, renamed], [BOOKS_ANNA]) == 2
    moved = dataclasses.replace(BOOKS_ANNA, locations=("berlin",))
    assert store.import_directory(ORG, [], [moved]) == 3
    snap = store.snapshot(ORG)
    assert snap.revision == 3
    assert snap.crm_users[IVY.id].name == "Ivy Novak"
    assert snap.finance_user_by_email(ANNA.email)["books"].locations == ("berlin",)
    with store.engine.connect() as conn:
        r = schema.directory_revisions
        counts = conn.execute(sa.select(r.c.revision, r.c.inserted, r.c.updated, r.c.deleted)
                              .order_by(r.c.revision)).all()
    assert [tuple(c) for c in counts] == [(1, 3, 0, 0), (2, 0, 1, 0), (3, 0, 1, 0)]


def test_organizations_have_their_own_revisions(store: Store) -> None:
    assert store.import_directory("org-a", [ANNA], []) == 1
    assert store.import_directory("org-b", [ANNA, IVY], []) == 1
    assert store.import_directory("org-a", [IVY], []) == 2
    assert store.snapshot("org-b").revision == 1
    assert set(store.snapshot("org-a").crm_users) == {ANNA.id, IVY.id}


def test_emails_match_case_insensitively_and_keys_are_stored_casefolded(store: Store) -> None:
    store.import_directory(ORG, [ANNA], [BOOKS_ANNA, SUBS_ANNA])
    snap = store.snapshot(ORG)
    assert set(snap.finance_users(snap.crm_users[ANNA.id])) == {"books", "subscriptions"}
    assert snap.crm_user("ANNA.SCHMIDT@acme.example") == ANNA
    assert snap.finance_user_by_email(ANNA.email)["books"].email == BOOKS_ANNA.email  # kept as given
    with store.engine.connect() as conn:
        keys = conn.execute(sa.select(schema.finance_users.c.email_key)).scalars().all()
        c = schema.crm_users
        found = conn.execute(sa.select(c.c.id).where(c.c.email_key == "anna.schmidt@acme.example")
                             ).scalars().all()
    assert set(keys) == {"anna.schmidt@acme.example"}
    assert found == [ANNA.id]


def test_a_finance_user_cannot_be_an_integration_user_and_nothing_is_written(store: Store) -> None:
    bad = IntegrationUser(ANNA.id, "iu-anna")
    with pytest.raises(InvalidArgument, match=r"'u-anna' \(Anna.Schmidt@ACME.example\) is a finance user"):
        store.import_directory(ORG, [ANNA, IVY], [BOOKS_ANNA], [IU_IVY, bad])
    assert store.revision(ORG) == 0
    for table in (schema.crm_users, schema.finance_users, schema.integration_users):
        assert _count(store, table) == 0

    assert store.import_directory(ORG, [ANNA, IVY], [], [IU_IVY, bad]) == 1  # Anna has no licence yet
    before = store.snapshot(ORG)
    # Anna gets a Books licence while the same import keeps naming her an integration user.
    with pytest.raises(InvalidArgument, match="u-anna"):
        store.import_directory(ORG, [ANNA, IVY, OLGA], [BOOKS_ANNA], [bad])
    assert store.revision(ORG) == 1
    store.invalidate()
    assert store.snapshot(ORG) == before


def test_integration_user_must_be_a_known_crm_user(store: Store) -> None:
    with pytest.raises(InvalidArgument, match="CRM user 'u-ghost' does not exist"):
        store.import_directory(ORG, [IVY], [], [IntegrationUser("u-ghost", "iu-ghost")])
    with pytest.raises(InvalidArgument, match="'iu-x' given to both"):
        store.import_directory(ORG, [IVY, OLGA], [], [IntegrationUser(IVY.id, "iu-x"),
                                                     IntegrationUser(OLGA.id, "iu-x")])
    assert store.revision(ORG) == 0


@pytest.mark.parametrize(("users", "message"), [
    ([IVY, IVY], "CRM user u-ivy listed twice"),
    ([CrmUser("", "x@acme.example", "X")], "non-empty"),
    ([CrmUser("u-x", "x@acme.example", "X", status="gone")], "status 'gone'"),  # type: ignore[arg-type]
    ([CrmUser("u-" + "x" * 200, "x@acme.example", "X")], "id longer than 128"),
])
def test_bad_users_are_rejected_the_same_way_on_every_database(
        store: Store, users: list[CrmUser], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        store.import_directory(ORG, users, [])
    assert store.revision(ORG) == 0


def test_integration_users_keep_created_at_and_notice_version_on_reimport(store: Store) -> None:
    store.import_directory(ORG, [IVY], [], [IU_IVY], permission_set_version=2)
    iu = schema.integration_users
    with store.engine.connect() as conn:
        first = conn.execute(sa.select(iu.c.created_at, iu.c.permission_set_version)).one()
    assert store.import_directory(ORG, [IVY], [], [IU_IVY], permission_set_version=3) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(iu.c.created_at, iu.c.permission_set_version)).one() == first
    assert first.permission_set_version == 2


def test_replace_deletes_unlisted_users_and_their_integration_users(store: Store) -> None:
    store.import_directory(ORG, [ANNA, IVY, OLGA], [BOOKS_ANNA, SUBS_ANNA], [IU_IVY])
    assert store.import_directory(ORG, [ANNA, OLGA], [BOOKS_ANNA], replace=True) == 2
    snap = store.snapshot(ORG)
    assert set(snap.crm_users) == {ANNA.id, OLGA.id}
    assert set(snap.finance_user_by_email(ANNA.email)) == {"books"}
    assert snap.integration_users == {}
    assert store.import_directory(ORG, [ANNA, OLGA], [BOOKS_ANNA], replace=True) == 2


def test_large_import_round_trips(store: Store) -> None:
    users = crm(1500)
    finance = [FinanceUser("books", f"b{i}", u.email.upper(), u.name, "staff")
               for i, u in enumerate(users[:1000])]
    integ = [IntegrationUser(u.id, f"iu-{u.id}") for u in users[1000:]]
    assert store.import_directory(ORG, users, finance, integ) == 1
    written = store.snapshot(ORG)
    store.invalidate()
    loaded = store.snapshot(ORG)
    assert loaded == written
    assert len(loaded.crm_users) == 1500 and len(loaded.integration_users) == 500
    assert store.import_directory(ORG, users, finance, integ) == 1


# -- issue 11 item 8 / issue 12 item 2: quota, assigned customers, removal --------------

def _crm_only(n: int) -> tuple[list[CrmUser], list[IntegrationUser]]:
    users = [CrmUser(f"u-{i}", f"u{i}@acme.example", f"U {i}") for i in range(n)]
    return users, [IntegrationUser(u.id, f"iu-{u.id}") for u in users]


def test_an_import_over_the_integration_user_quota_is_refused_with_nothing_written(
        store: Store) -> None:
    users, integ = _crm_only(3)
    assert store.import_directory(ORG, users, [], integ[:2], integration_quota=2) == 1
    with pytest.raises(InvalidArgument) as info:
        store.import_directory(ORG, users, [], integ, integration_quota=2)
    assert info.value.field == "integration_users"
    assert "3 integration users" in info.value.description and "quota of 2" in info.value.description
    assert store.revision(ORG) == 1
    assert set(store.snapshot(ORG).integration_users) == {"u-0", "u-1"}
    # Re-importing what is there (no new integration user) stays a no-op, not an error.
    assert store.import_directory(ORG, users, [], integ[:2], integration_quota=1) == 1


def test_an_operators_raise_overrides_the_policy_quota(store: Store) -> None:
    from authz.migration.service import MigrationStore
    from authz.migration.settings import OrgSettings

    users, integ = _crm_only(3)
    MigrationStore(store, lambda org: OrgSettings(quota=2)).set_quota(ORG, 3, "ops", "ticket 1")
    assert store.import_directory(ORG, users, [], integ, integration_quota=2) == 1


def test_assigned_customers_are_stored_and_a_change_bumps_the_revision(store: Store) -> None:
    stella = FinanceUser("books", "b-stella", "stella@acme.example", "Stella", "staff_assigned",
                         assigned_customers=frozenset({"c-2", "c-1"}))
    assert store.import_directory(ORG, [], [stella]) == 1
    assert store.import_directory(ORG, [], [stella]) == 1
    fresh = Store(store.engine)  # read back from the database, not this Store's cache
    got = fresh.snapshot(ORG).finance_user_by_email("stella@acme.example")["books"]
    assert got.assigned_customers == {"c-1", "c-2"}
    fewer = dataclasses.replace(stella, assigned_customers=frozenset({"c-1"}))
    assert store.import_directory(ORG, [], [fewer]) == 2
    assert Store(store.engine).snapshot(ORG).finance_user_by_email(
        "stella@acme.example")["books"].assigned_customers == {"c-1"}


def test_replace_removes_users_not_listed_and_their_integration_users(store: Store) -> None:
    users, integ = _crm_only(2)
    store.import_directory(ORG, [ANNA, *users], [BOOKS_ANNA], integ)
    rev = store.import_directory(ORG, [ANNA, users[0]], [], replace=True)
    snap = Store(store.engine).snapshot(ORG)
    assert rev == 2 and set(snap.crm_users) == {ANNA.id, "u-0"}
    assert set(snap.integration_users) == {"u-0"}  # u-1's went with them
    assert snap.finance_user_by_email(ANNA.email) == {}
