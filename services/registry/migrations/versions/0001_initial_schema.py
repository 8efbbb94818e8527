"""The registry service's schema as create_all made it before migrations: a database made then is
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
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("username_index", sa.String(length=64), nullable=True),
        sa.Column("username_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("password_temporary", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint("username_index"),
    )
    op.create_table(
        "certifications",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("certification", sa.String(length=40), nullable=False),
        sa.Column("granted_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("volunteer_number", "certification"),
    )
    op.create_index(op.f("ix_certifications_certification"), "certifications", ["certification"], unique=False)
    op.create_index(op.f("ix_certifications_expires_on"), "certifications", ["expires_on"], unique=False)
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
        "insurance",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("insurer", sa.String(length=40), nullable=False),
        sa.Column("cover", sa.String(length=40), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "insurer", "cover", "valid_from", "valid_until"),
    )
    op.create_table(
        "org_units",
        sa.Column("code", sa.String(length=15), nullable=False),
        sa.Column("parent_code", sa.String(length=15), nullable=True),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("party_members", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(op.f("ix_org_units_parent_code"), "org_units", ["parent_code"], unique=False)
    op.create_index(op.f("ix_org_units_path"), "org_units", ["path"], unique=False)
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
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(op.f("ix_refresh_tokens_account_id"), "refresh_tokens", ["account_id"], unique=False)
    op.create_index(op.f("ix_refresh_tokens_expires_at"), "refresh_tokens", ["expires_at"], unique=False)
    op.create_index(op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False)
    op.create_table(
        "sign_in_failures",
        sa.Column("username_index", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("username_index"),
    )
    op.create_index(op.f("ix_sign_in_failures_locked_until"), "sign_in_failures", ["locked_until"], unique=False)
    op.create_table(
        "sites",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("org_unit_code", sa.String(length=15), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("site_id"),
    )
    op.create_index(op.f("ix_sites_org_unit_code"), "sites", ["org_unit_code"], unique=False)
    op.create_table(
        "stream_checkpoints",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=50), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "stream"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.String(length=12), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "volunteer_number"),
    )
    op.create_index(op.f("ix_team_members_volunteer_number"), "team_members", ["volunteer_number"], unique=False)
    op.create_table(
        "teams",
        sa.Column("team_id", sa.String(length=12), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("leader_number", sa.String(length=20), nullable=False),
        sa.Column("dissolved", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("team_id"),
    )
    op.create_index(op.f("ix_teams_site_id"), "teams", ["site_id"], unique=False)
    op.create_table(
        "training_attendance",
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "volunteer_number"),
    )
    op.create_index(
        op.f("ix_training_attendance_volunteer_number"), "training_attendance", ["volunteer_number"], unique=False
    )
    op.create_table(
        "training_sessions",
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("topic", sa.String(length=40), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("trainer", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index(op.f("ix_training_sessions_site_id"), "training_sessions", ["site_id"], unique=False)
    op.create_table(
        "volunteer_skills",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("skill", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number", "skill"),
    )
    op.create_index(op.f("ix_volunteer_skills_skill"), "volunteer_skills", ["skill"], unique=False)
    op.create_table(
        "volunteers",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("id_index", sa.String(length=64), nullable=True),
        sa.Column("name_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("id_number_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("phone_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("community_code", sa.String(length=15), nullable=False),
        sa.Column("org_path", sa.String(length=200), nullable=False),
        sa.Column("political_status", sa.String(length=20), nullable=False),
        sa.Column("age_band", sa.String(length=10), nullable=False),
        sa.Column("gender", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("tags", sa.String(length=300), nullable=False),
        sa.Column("reported_in_at", sa.String(length=15), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("personal_data_destroyed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_number"),
        sa.UniqueConstraint("id_index"),
    )
    op.create_index(op.f("ix_volunteers_community_code"), "volunteers", ["community_code"], unique=False)
    op.create_index(op.f("ix_volunteers_org_path"), "volunteers", ["org_path"], unique=False)
    op.create_index(op.f("ix_volunteers_political_status"), "volunteers", ["political_status"], unique=False)
    op.create_index(op.f("ix_volunteers_status"), "volunteers", ["status"], unique=False)
    op.create_table(
        "volunteer_keys",
        sa.Column("volunteer_number", sa.String(length=20), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["volunteer_number"],
            ["volunteers.volunteer_number"],
        ),
        sa.PrimaryKeyConstraint("volunteer_number"),
    )


def downgrade() -> None:
    op.drop_table("volunteer_keys")
    op.drop_index(op.f("ix_volunteers_status"), table_name="volunteers")
    op.drop_index(op.f("ix_volunteers_political_status"), table_name="volunteers")
    op.drop_index(op.f("ix_volunteers_org_path"), table_name="volunteers")
    op.drop_index(op.f("ix_volunteers_community_code"), table_name="volunteers")
    op.drop_table("volunteers")
    op.drop_index(op.f("ix_volunteer_skills_skill"), table_name="volunteer_skills")
    op.drop_table("volunteer_skills")
    op.drop_index(op.f("ix_training_sessions_site_id"), table_name="training_sessions")
    op.drop_table("training_sessions")
    op.drop_index(op.f("ix_training_attendance_volunteer_number"), table_name="training_attendance")
    op.drop_table("training_attendance")
    op.drop_index(op.f("ix_teams_site_id"), table_name="teams")
    op.drop_table("teams")
    op.drop_index(op.f("ix_team_members_volunteer_number"), table_name="team_members")
    op.drop_table("team_members")
    op.drop_table("stream_checkpoints")
    op.drop_index(op.f("ix_sites_org_unit_code"), table_name="sites")
    op.drop_table("sites")
    op.drop_index(op.f("ix_sign_in_failures_locked_until"), table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index(op.f("ix_refresh_tokens_family_id"), table_name="refresh_tokens")
    op.drop_index(op.f("ix_refresh_tokens_expires_at"), table_name="refresh_tokens")
    op.drop_index(op.f("ix_refresh_tokens_account_id"), table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_index(op.f("ix_org_units_path"), table_name="org_units")
    op.drop_index(op.f("ix_org_units_parent_code"), table_name="org_units")
    op.drop_table("org_units")
    op.drop_table("insurance")
    op.drop_table("inbox")
    op.drop_table("events")
    op.drop_table("counters")
    op.drop_index(op.f("ix_certifications_expires_on"), table_name="certifications")
    op.drop_index(op.f("ix_certifications_certification"), table_name="certifications")
    op.drop_table("certifications")
    op.drop_table("accounts")
