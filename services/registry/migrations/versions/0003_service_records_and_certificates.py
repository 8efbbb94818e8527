"""Registry follows dispatch's confirmed service records and issues certificates over them
(志愿服务记录证明): the records as last published, the certificates and the records each covers.

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
    op.create_table(
        "certificate_records",
        sa.Column("certificate_number", sa.String(length=20), nullable=False),
        sa.Column("record_id", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("activity_id", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("group_served", sa.String(length=30), nullable=False),
        sa.PrimaryKeyConstraint("certificate_number", "record_id"),
    )
    op.create_table(
        "certificates",
        sa.Column("certificate_number", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_to", sa.Date(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issuer_code", sa.String(length=40), nullable=False),
        sa.Column("issuer_name", sa.String(length=100), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("total_minutes", sa.Integer(), nullable=False),
        sa.Column("total_hours", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("certificate_number"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificates_volunteer_number"), ["volunteer_number"], unique=False)

    op.create_table(
        "service_records",
        sa.Column("record_id", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("activity_id", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("group_served", sa.String(length=30), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.create_index("ix_service_records_volunteer_date", ["volunteer_number", "service_date"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.drop_index("ix_service_records_volunteer_date")

    op.drop_table("service_records")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_volunteer_number"))

    op.drop_table("certificates")
    op.drop_table("certificate_records")
