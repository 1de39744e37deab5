"""The one SQLAlchemy MetaData every table of the store is declared on (schema.py,
audit_schema.py, migration_schema.py), in a module of its own so that they import it
rather than each other."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
