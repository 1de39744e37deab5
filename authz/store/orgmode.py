"""An organization's migration state in the store (DOMAIN.md §6): the day the phased
release reached it, which starts its window, and when and how it became unified.

Written inside the caller's transaction, after `Store.lock_revision`; a change of state
bumps the directory revision, so every replica's cached snapshot (which carries the
state) is reloaded and decides in the new mode.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from authz.directory import OrgMode
from authz.store.migration_schema import org_migration

SAVED = "saved"
WINDOW_ENDED = "window_ended"
SIGNUP = "signup"
IMPORT = "import"


def read_mode(conn: Connection, org_id: str) -> OrgMode:
    """The organization's state (no row: the release has not been recorded yet)."""
    m = org_migration
    row = conn.execute(sa.select(m.c.release_reached_on, m.c.unified_by)
                       .where(m.c.org_id == org_id)).first()
    if row is None:
        return OrgMode()
    return OrgMode(row[0], row[1] or "")


def record_release(conn: Connection, org_id: str, day: dt.date) -> bool:
    """Record that the release reached the organization on `day`, unless a day is already
    recorded (the first sighting starts the window; later ones change nothing). True when
    something was written."""
    m = org_migration
    current = conn.execute(sa.select(m.c.release_reached_on).where(m.c.org_id == org_id)).first()
    if current is None:
        conn.execute(m.insert().values(org_id=org_id, release_reached_on=day))
        return True
    if current[0] is None:
        conn.execute(m.update().where(m.c.org_id == org_id).values(release_reached_on=day))
        return True
    return False


def mark_unified(conn: Connection, org_id: str, how: str, now: dt.datetime) -> bool:
    """Make the organization unified (`how`: saved, window_ended, signup, import) unless it
    is already; True when it changed."""
    m = org_migration
    current = conn.execute(sa.select(m.c.unified_by).where(m.c.org_id == org_id)).first()
    if current is None:
        conn.execute(m.insert().values(org_id=org_id, release_reached_on=now.date(),
                                       unified_at=now, unified_by=how))
        return True
    if current[0]:
        return False
    conn.execute(m.update().where(m.c.org_id == org_id).values(unified_at=now, unified_by=how))
    return True


def all_modes(conn: Connection) -> dict[str, OrgMode]:
    """Every recorded organization's state, in one query (the server's schedule asks for
    all organizations each round)."""
    m = org_migration
    return {r[0]: OrgMode(r[1], r[2] or "") for r in conn.execute(
        sa.select(m.c.org_id, m.c.release_reached_on, m.c.unified_by))}
