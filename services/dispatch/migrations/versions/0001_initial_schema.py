"""The dispatch service's schema as create_all made it before migrations: a database made then is
adopted at this revision (shared.migrations).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("activity_id", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("theme", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("group_served", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("brand_team_id", sa.String(length=20), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("people_served", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("posts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("activity_id"),
    )
    op.create_index(op.f("ix_activities_order_id"), "activities", ["order_id"], unique=False)
    op.create_index(op.f("ix_activities_site_id"), "activities", ["site_id"], unique=False)
    op.create_table(
        "attendances",
        sa.Column("shift_id", sa.String(length=40), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("minutes", sa.Integer(), nullable=True),
        sa.Column("flag", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("shift_id", "volunteer_number"),
    )
    op.create_index("attendances_by_volunteer", "attendances", ["volunteer_number", "checked_in_at"], unique=False)
    op.create_table(
        "correction_requests",
        sa.Column("record_id", sa.String(length=20), nullable=False),
        sa.Column("request_no", sa.Integer(), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("requested_minutes", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("decided_reason", sa.String(length=40), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("record_id", "request_no"),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("aggregate_type", sa.String(length=50), nullable=False),
        sa.Column("aggregate_id", sa.String(length=100), nullable=False),
        sa.Column("aggregate_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("aggregate_type", "aggregate_id", "aggregate_version", name="uq_events_aggregate_version"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "known_certifications",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("certification", sa.String(length=40), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("volunteer_number", "certification"),
    )
    op.create_table(
        "known_insurance",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "valid_from", "valid_until"),
    )
    op.create_table(
        "known_sites",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("org_unit_code", sa.String(length=15), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("site_id"),
    )
    op.create_index(op.f("ix_known_sites_org_unit_code"), "known_sites", ["org_unit_code"], unique=False)
    op.create_table(
        "known_time_credit_reservations",
        sa.Column("reservation_id", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("beneficiary_number", sa.String(length=20), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("reservation_id"),
    )
    op.create_table(
        "known_volunteers",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("community_code", sa.String(length=15), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("age_band", sa.String(length=10), nullable=False),
        sa.Column("skills", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number"),
    )
    op.create_index(op.f("ix_known_volunteers_community_code"), "known_volunteers", ["community_code"], unique=False)
    op.create_table(
        "notices",
        sa.Column("notice_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("shift_id", sa.String(length=40), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("notice_id"),
    )
    op.create_index(op.f("ix_notices_volunteer_number"), "notices", ["volunteer_number"], unique=False)
    op.create_table(
        "order_assignees",
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("assignee", sa.String(length=20), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "assignee"),
    )
    op.create_index("order_assignees_by_assignee", "order_assignees", ["assignee", "window_end"], unique=False)
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("group_served", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("community_code", sa.String(length=15), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headcount", sa.Integer(), nullable=False),
        sa.Column("urgency", sa.String(length=20), nullable=False),
        sa.Column("risky", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("people_served", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("unanswered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index(op.f("ix_orders_community_code"), "orders", ["community_code"], unique=False)
    op.create_index(op.f("ix_orders_deadline"), "orders", ["deadline"], unique=False)
    op.create_index(op.f("ix_orders_site_id"), "orders", ["site_id"], unique=False)
    op.create_index(op.f("ix_orders_status"), "orders", ["status"], unique=False)
    op.create_table(
        "outbox",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stream_sequence", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["position"],
        unique=False,
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "rounding_rules",
        sa.Column("district_code", sa.String(length=6), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bands", sa.JSON(), nullable=False),
        sa.Column("set_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("district_code", "effective_from"),
    )
    op.create_table(
        "service_records",
        sa.Column("record_id", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("activity_id", sa.String(length=40), nullable=False),
        sa.Column("shift_id", sa.String(length=40), nullable=True),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("group_served", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_minutes", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("counted_hours", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("flag", sa.String(length=40), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("correction_pending", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index(op.f("ix_service_records_activity_id"), "service_records", ["activity_id"], unique=False)
    op.create_index(op.f("ix_service_records_site_id"), "service_records", ["site_id"], unique=False)
    op.create_index(op.f("ix_service_records_status"), "service_records", ["status"], unique=False)
    op.create_index("one_record_per_attendance", "service_records", ["shift_id", "volunteer_number"], unique=True)
    op.create_index("service_records_by_volunteer", "service_records", ["volunteer_number", "started_at"], unique=False)
    op.create_table(
        "shifts",
        sa.Column("shift_id", sa.String(length=40), nullable=False),
        sa.Column("activity_id", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("post_id", sa.String(length=40), nullable=True),
        sa.Column("series_id", sa.String(length=40), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("geofence", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.Column("waitlisted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shift_id"),
    )
    op.create_index(op.f("ix_shifts_activity_id"), "shifts", ["activity_id"], unique=False)
    op.create_index(op.f("ix_shifts_ends_at"), "shifts", ["ends_at"], unique=False)
    op.create_index(op.f("ix_shifts_series_id"), "shifts", ["series_id"], unique=False)
    op.create_table(
        "signups",
        sa.Column("shift_id", sa.String(length=40), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("position", sa.String(length=20), nullable=False),
        sa.Column("signed_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shift_id", "volunteer_number"),
    )
    op.create_index("signups_by_volunteer", "signups", ["volunteer_number", "shift_id"], unique=False)
    op.create_table(
        "stream_checkpoints",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=50), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "stream"),
    )


def downgrade() -> None:
    op.drop_table("stream_checkpoints")
    op.drop_index("signups_by_volunteer", table_name="signups")
    op.drop_table("signups")
    op.drop_index(op.f("ix_shifts_series_id"), table_name="shifts")
    op.drop_index(op.f("ix_shifts_ends_at"), table_name="shifts")
    op.drop_index(op.f("ix_shifts_activity_id"), table_name="shifts")
    op.drop_table("shifts")
    op.drop_index("service_records_by_volunteer", table_name="service_records")
    op.drop_index("one_record_per_attendance", table_name="service_records")
    op.drop_index(op.f("ix_service_records_status"), table_name="service_records")
    op.drop_index(op.f("ix_service_records_site_id"), table_name="service_records")
    op.drop_index(op.f("ix_service_records_activity_id"), table_name="service_records")
    op.drop_table("service_records")
    op.drop_table("rounding_rules")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_index(op.f("ix_orders_status"), table_name="orders")
    op.drop_index(op.f("ix_orders_site_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_deadline"), table_name="orders")
    op.drop_index(op.f("ix_orders_community_code"), table_name="orders")
    op.drop_table("orders")
    op.drop_index("order_assignees_by_assignee", table_name="order_assignees")
    op.drop_table("order_assignees")
    op.drop_index(op.f("ix_notices_volunteer_number"), table_name="notices")
    op.drop_table("notices")
    op.drop_index(op.f("ix_known_volunteers_community_code"), table_name="known_volunteers")
    op.drop_table("known_volunteers")
    op.drop_table("known_time_credit_reservations")
    op.drop_index(op.f("ix_known_sites_org_unit_code"), table_name="known_sites")
    op.drop_table("known_sites")
    op.drop_table("known_insurance")
    op.drop_table("known_certifications")
    op.drop_table("inbox")
    op.drop_table("events")
    op.drop_table("counters")
    op.drop_table("correction_requests")
    op.drop_index("attendances_by_volunteer", table_name="attendances")
    op.drop_table("attendances")
    op.drop_index(op.f("ix_activities_site_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_order_id"), table_name="activities")
    op.drop_table("activities")
