"""Migration tests run on SQLite and PostgreSQL, like the store's (same fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes
from typing import Any

import pytest

from authz.directory import CrmUser, FinanceUser
from authz.migration.service import MigrationStore
from authz.migration.settings import OrgSettings
from authz.store import Store
from tests.store.conftest import db_url, open_, store  # noqa: F401  (fixtures)

ORG = "acme-eu"
ADMIN = CrmUser("admin", "admin@acme.example", "Ada Admin", is_admin=True)
BOOKS = FinanceUser("books", "b-bob", "BOB@acme.example", "Bob", "staff")


def users(n: int) -> list[CrmUser]:
    return [CrmUser(f"u{i:04d}", f"u{i:04d}@acme.example", f"User {i}") for i in range(n)]


def settings(quota: int = 1000, version: int = 2) -> Callable[[str], OrgSettings]:
    return lambda org_id: OrgSettings(quota=quota, permission_set_version=version)


@pytest.fixture
def seeded(store: Store) -> Store:  # noqa: F811
    store.import_directory(ORG, [ADMIN, CrmUser("bob", "bob@acme.example", "Bob"),
                                 CrmUser("olga", "olga@acme.example", "Olga", status="disabled"),
                                 CrmUser("nomail", "", "No Mail"), *users(40)], [BOOKS])
    return store


@pytest.fixture
def ms(seeded: Store) -> MigrationStore:
    return MigrationStore(seeded, settings(), usage=lambda org_id: {"u0003": 7, "u0001": 2})


class Inbox:
    """aiosmtpd handler keeping every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def notices(self) -> list[str]:
        return [m["X-Authz-Notice"] for m in self.messages]
