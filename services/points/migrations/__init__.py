"""Points's schema migrations: versions/ holds its revisions, which lead to the tables of
services/points/store.py (see shared/migrations.py)."""

from services.points.store import metadata
from shared.migrations import ServiceMigrations

migrations = ServiceMigrations("points", metadata)
