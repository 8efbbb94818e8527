"""Alembic's entry point for points's revisions: see shared/migrations.py."""

from services.points.migrations import migrations

migrations.run_environment()
