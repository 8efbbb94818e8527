"""Dispatch's schema migrations: versions/ holds its revisions, which lead to the tables of
services/dispatch/store.py (see shared/migrations.py)."""

from services.dispatch.store import metadata
from shared.migrations import ServiceMigrations

migrations = ServiceMigrations("dispatch", metadata)
