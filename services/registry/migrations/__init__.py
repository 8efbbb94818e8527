"""Registry's schema migrations: versions/ holds its revisions, which lead to the tables of
services/registry/store.py (see shared/migrations.py)."""

from services.registry.store import metadata
from shared.migrations import ServiceMigrations

migrations = ServiceMigrations("registry", metadata)
