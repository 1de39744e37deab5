"""Every store test runs twice: on an SQLite file and on a fresh PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from authz.directory import CrmUser, FinanceUser, IntegrationUser
from authz.store import Store, open_store

ORG = "acme-eu"
OpenStore = Callable[..., Store]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/var/authz.db"  # var/ does not exist yet: open_store makes it
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_(db_url: str) -> Iterator[OpenStore]:
    """Opens Stores (replicas) on the same database; closes them all afterwards."""
    stores: list[Store] = []

    def make(**options: Any) -> Store:
        store = open_store(db_url, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(open_: OpenStore) -> Store:
    s = open_()
    s.upgrade()
    return s


def crm(n: int, *, prefix: str = "u", domain: str = "acme.example") -> list[CrmUser]:
    return [CrmUser(f"{prefix}{i}", f"{prefix}{i}@{domain}", f"User {i}") for i in range(n)]


ANNA = CrmUser("u-anna", "Anna.Schmidt@ACME.example", "Anna Schmidt", is_admin=True)
IVY = CrmUser("u-ivy", "ivy@acme.example", "Ivy")
OLGA = CrmUser("u-olga", "olga@acme.example", "Olga", status="disabled")
BOOKS_ANNA = FinanceUser("books", "b-anna", " anna.schmidt@acme.EXAMPLE", "Anna Schmidt", "admin")
SUBS_ANNA = FinanceUser("subscriptions", "s-anna", "anna.schmidt@acme.example", "Anna", "subscription_sales",
                        locations=("berlin", "munich"))
IU_IVY = IntegrationUser("u-ivy", "iu-ivy")
