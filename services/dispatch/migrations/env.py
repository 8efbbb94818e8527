"""Alembic's entry point for dispatch's revisions: see shared/migrations.py."""

from services.dispatch.migrations import migrations

migrations.run_environment()
