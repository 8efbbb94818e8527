"""Alembic's entry point for reporting's revisions: see shared/migrations.py."""

from services.reporting.migrations import migrations

migrations.run_environment()
