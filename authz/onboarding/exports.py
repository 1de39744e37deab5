"""The export folder an organization is imported from, and reading it with JSON paths.

One folder per organization (examples: `examples/exports/<org>/`); every file is JSON:

  organization.json      ours (no public API has it): org_id, name, data_centre, edition,
                         products, mode, integration_owner (a CRM user id),
                         integration_user_quota
  crm_users.json         CRM `GET /users`: {"users": [{id, zuid, email, full_name, status,
                         role: {name, id}, profile: {name, id}}]}
  books_users.json       Books `GET /users`: {"users": [{user_id, role_id, name, email,
                         user_role, status}]}
  billing_users.json     Billing (Subscriptions) `GET /users`: the same shape as Books
  books_roles.json       the role editor (no public API), see `authz.onboarding.roles`
  billing_roles.json     the same for Billing
  books_fields.json      field access per role, see `authz.onboarding.fields`
  books_approvals.json   approval settings per module, see `authz.onboarding.approvals`
  books_contacts.json    Books `GET /contacts`: {"contacts": [{contact_id, contact_name,
                         contact_type, owner_id}]}: owner_id (the contact owner's Books
                         user id) gives each user's assigned customers
  billing_*.json         the same files for Billing, where it has them
  integration_users.json optional, ours: {"integration_users": [{crm_user_id,
                         integration_user_id}]} (migration adds them, Books does not know)

JSON is read as YAML (a superset), so every value keeps its line and column; problems name
file:line:column, the JSON path, what was found and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authz import catalog
from authz.policy.errors import Location, PolicyError, Problem
from authz.policy.reader import Reader
from authz.policy.yamlsrc import Path_, load

#: File name prefix of each finance product's exports.
PREFIX = {catalog.BOOKS: "books", catalog.SUBSCRIPTIONS: "billing"}


def json_path(path: Path_) -> str:
    """`$.users[3].role_id`, the way JSON tools name a value."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class JsonReader(Reader):
    """A Reader whose problems also name the JSON path of the value."""

    def fail(self, path: Path_, message: str, found: Any = None, expected: str = "") -> None:
        shown = "" if found is None else repr(found)
        self.problems.append(Problem(self.src.at(path), f"{json_path(path)}: {message}",
                                     shown, expected))

    def text(self, path: Path_, required: bool = True) -> str:
        """A string or a number (Books ids arrive as either) as text."""
        value = self.get(path)
        if value is None or value == "":
            if required:
                self.fail(path, "missing", None, "a value")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(path, "expected text or a number", value)
            return ""
        return str(value).strip()

    def items(self, path: Path_) -> list[tuple[Path_, dict[str, Any]]]:
        """The mappings of a list, each with its path."""
        out: list[tuple[Path_, dict[str, Any]]] = []
        for i, item in enumerate(self.seq(path)):
            if isinstance(item, dict):
                out.append(((*path, i), item))
            else:
                self.fail((*path, i), "expected an object", item)
        return out


class Exports:
    """The files of one export folder, parsed; problems gathered across all of them."""

    def __init__(self, folder: Path, display: str) -> None:
        self.folder = folder
        self.display = display
        self.problems: list[Problem] = []
        self._readers: dict[str, JsonReader | None] = {}

    def reader(self, name: str, required: bool = True) -> JsonReader | None:
        """The file's reader; None (a problem when required) if it is absent or unreadable."""
        if name in self._readers:
            return self._readers[name]
        path = self.folder / name
        reader: JsonReader | None = None
        if path.is_file():
            try:
                reader = JsonReader(load(path, f"{self.display}/{name}"), self.problems)
            except PolicyError as exc:
                self.problems.extend(exc.problems)
        elif required:
            reader = None
            self.problems.append(Problem(Location(f"{self.display}/{name}"), "missing export file",
                                         "", f"{name} (see authz/onboarding/exports.py)"))
        if reader is not None and not isinstance(reader.src.data, dict):
            reader.fail((), "expected a JSON object", type(reader.src.data).__name__)
            reader = None
        self._readers[name] = reader
        return reader

    def check(self) -> None:
        if self.problems:
            raise PolicyError(self.problems)
