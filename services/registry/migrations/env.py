"""Alembic's entry point for registry's revisions: see shared/migrations.py."""

from services.registry.migrations import migrations

migrations.run_environment()
