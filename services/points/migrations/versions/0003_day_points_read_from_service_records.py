"""The ledger reads a volunteer's points for a day from their service records (an index holding
volunteer, day and points), not from a table of day totals it kept beside them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_records_volunteer_number"))
        batch_op.create_index(
            "ix_service_records_volunteer_day", ["volunteer_number", "service_date", "points"], unique=False
        )
    op.drop_table("day_points")


def downgrade() -> None:
    op.create_table(
        "day_points",
        sa.Column("volunteer_number", sa.VARCHAR(length=20), nullable=False),
        sa.Column("service_date", sa.DATE(), nullable=False),
        sa.Column("points", sa.BIGINT(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "service_date"),
    )
    # The day totals are the records' points, as they were kept.
    op.execute(
        "INSERT INTO day_points (volunteer_number, service_date, points)"
        " SELECT volunteer_number, service_date, SUM(points) FROM service_records"
        " GROUP BY volunteer_number, service_date"
    )
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.drop_index("ix_service_records_volunteer_day")
        batch_op.create_index(batch_op.f("ix_service_records_volunteer_number"), ["volunteer_number"], unique=False)
