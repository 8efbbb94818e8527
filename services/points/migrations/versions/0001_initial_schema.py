"""The points service's schema as create_all made it before migrations: a database made then is
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
        "accounts",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("district_code", sa.String(length=6), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("debt", sa.BigInteger(), nullable=False),
        sa.Column("hours", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("time_minutes", sa.BigInteger(), nullable=False),
        sa.Column("time_debt", sa.BigInteger(), nullable=False),
        sa.Column("star_level", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number"),
    )
    op.create_index(op.f("ix_accounts_district_code"), "accounts", ["district_code"], unique=False)
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "day_points",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "service_date"),
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
        "family_links",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("member_number", sa.String(length=20), nullable=False),
        sa.Column("relation", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "member_number"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "journal",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("from_account", sa.String(length=60), nullable=False),
        sa.Column("to_account", sa.String(length=60), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("position"),
    )
    op.create_index("ix_journal_from", "journal", ["from_account", "position"], unique=False)
    op.create_index("ix_journal_to", "journal", ["to_account", "position"], unique=False)
    op.create_table(
        "known_sites",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("district_code", sa.String(length=6), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("open", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("site_id"),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("account", sa.String(length=60), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "unit"),
    )
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
        "point_lots",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "expires_on"),
    )
    op.create_index("ix_point_lots_expires_on", "point_lots", ["expires_on"], unique=False)
    op.create_table(
        "points_rules",
        sa.Column("district_code", sa.String(length=6), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("district_code", "version"),
    )
    op.create_table(
        "redemptions",
        sa.Column("redemption_id", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("item_id", sa.String(length=20), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("taken_from", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("redemption_id"),
        sa.UniqueConstraint("redemption_id", name="uq_redemption"),
    )
    op.create_index("ix_redemptions_site", "redemptions", ["site_id", "reserved_at"], unique=False)
    op.create_index(op.f("ix_redemptions_volunteer_number"), "redemptions", ["volunteer_number"], unique=False)
    op.create_table(
        "service_records",
        sa.Column("record_id", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("service_district", sa.String(length=6), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("group_served", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("minutes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index(op.f("ix_service_records_volunteer_number"), "service_records", ["volunteer_number"], unique=False)
    op.create_table(
        "shop_items",
        sa.Column("item_id", sa.String(length=20), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("price_points", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("withdrawn", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index(op.f("ix_shop_items_site_id"), "shop_items", ["site_id"], unique=False)
    op.create_table(
        "star_thresholds",
        sa.Column("city", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("city"),
    )
    op.create_table(
        "stream_checkpoints",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=50), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "stream"),
    )
    op.create_table(
        "time_bank_limit",
        sa.Column("city", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("minutes_per_year", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("city"),
    )
    op.create_table(
        "time_credit_reservations",
        sa.Column("reservation_id", sa.String(length=20), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("beneficiary_number", sa.String(length=20), nullable=False),
        sa.Column("minutes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("reservation_id"),
    )
    op.create_index(
        op.f("ix_time_credit_reservations_order_id"), "time_credit_reservations", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_time_credit_reservations_volunteer_number"),
        "time_credit_reservations",
        ["volunteer_number"],
        unique=False,
    )
    op.create_table(
        "time_gifts",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "year"),
    )
    op.create_table(
        "waiting",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("record_id", sa.String(length=20), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(op.f("ix_waiting_record_id"), "waiting", ["record_id"], unique=False)
    op.create_index(op.f("ix_waiting_volunteer_number"), "waiting", ["volunteer_number"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_waiting_volunteer_number"), table_name="waiting")
    op.drop_index(op.f("ix_waiting_record_id"), table_name="waiting")
    op.drop_table("waiting")
    op.drop_table("time_gifts")
    op.drop_index(op.f("ix_time_credit_reservations_volunteer_number"), table_name="time_credit_reservations")
    op.drop_index(op.f("ix_time_credit_reservations_order_id"), table_name="time_credit_reservations")
    op.drop_table("time_credit_reservations")
    op.drop_table("time_bank_limit")
    op.drop_table("stream_checkpoints")
    op.drop_table("star_thresholds")
    op.drop_index(op.f("ix_shop_items_site_id"), table_name="shop_items")
    op.drop_table("shop_items")
    op.drop_index(op.f("ix_service_records_volunteer_number"), table_name="service_records")
    op.drop_table("service_records")
    op.drop_index(op.f("ix_redemptions_volunteer_number"), table_name="redemptions")
    op.drop_index("ix_redemptions_site", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_table("points_rules")
    op.drop_index("ix_point_lots_expires_on", table_name="point_lots")
    op.drop_table("point_lots")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_table("ledger_accounts")
    op.drop_table("known_sites")
    op.drop_index("ix_journal_to", table_name="journal")
    op.drop_index("ix_journal_from", table_name="journal")
    op.drop_table("journal")
    op.drop_table("inbox")
    op.drop_table("family_links")
    op.drop_table("events")
    op.drop_table("day_points")
    op.drop_table("counters")
    op.drop_index(op.f("ix_accounts_district_code"), table_name="accounts")
    op.drop_table("accounts")
