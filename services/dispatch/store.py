"""Dispatch's tables: its event store; its local views of registry's volunteers and sites; and its
views of orders, activities, shifts, sign-ups, attendance and service records, which also keep
the free text that never goes into an event (descriptions, addresses, titles, comments)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    delete,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch.domain import KnownVolunteer
from shared.db import UtcDateTime, upsert
from shared.eventstore import EventStoreSchema
from shared.numbering import Counters

metadata = MetaData()
schema = EventStoreSchema(metadata)

volunteers = Table(
    "known_volunteers",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("community_code", String(15), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),
    Column("age_band", String(10), nullable=False),
    Column("skills", String(500), nullable=False),
    Column("status", String(20), nullable=False),
)

certifications = Table(
    "known_certifications",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("certification", String(40), primary_key=True),
    Column("expires_on", Date),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(40), primary_key=True),
    Column("status", String(20), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("group_served", String(40), nullable=False),
    Column("field", String(40), nullable=False),
    Column("community_code", String(15), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),
    Column("site_id", String(40), nullable=False, index=True),
    Column("description", Text, nullable=False, default=""),
    Column("address", String(500), nullable=False, default=""),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("headcount", Integer, nullable=False),
    Column("urgency", String(20), nullable=False),
    Column("risky", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("dispatched_at", UtcDateTime),
    Column("accepted_at", UtcDateTime),
    Column("deadline", UtcDateTime, index=True),
    Column("completed_at", UtcDateTime),
    Column("people_served", Integer),
    Column("rating", Integer),
    Column("comment", Text),
    # Set while the order waits for staff after a dispatch nobody accepted: overdue at once.
    Column("unanswered_at", UtcDateTime),
)

# Who serves which order, and when: makes a volunteer busy for other orders in that window.
# `active` turns false when the order is completed or cancelled.
order_assignees = Table(
    "order_assignees",
    metadata,
    Column("order_id", String(40), primary_key=True),
    Column("assignee", String(20), primary_key=True),  # a volunteer number or a team id
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("active", Boolean, nullable=False),
    Index("order_assignees_by_assignee", "assignee", "window_end"),
)

sites = Table(
    "known_sites",
    metadata,
    Column("site_id", String(40), primary_key=True),
    Column("org_unit_code", String(15), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),  # the SiteOpened envelope's org path
    Column("level", String(20), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("open", Boolean, nullable=False, default=True),
)

# Points' time-credit reservations, as far as dispatch needs them: an order may be paid with one.
time_credit_reservations = Table(
    "known_time_credit_reservations",
    metadata,
    Column("reservation_id", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False),
    Column("beneficiary_number", String(20), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("state", String(20), nullable=False),  # held, taken (an order names it), released
    Column("order_id", String(40)),
)

# Registry's insurance records, as far as dispatch needs them: risky work needs the window covered.
insurance = Table(
    "known_insurance",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("valid_until", Date, primary_key=True),
)

activities = Table(
    "activities",
    metadata,
    Column("activity_id", String(40), primary_key=True),
    Column("site_id", String(40), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("theme", String(40), nullable=False),
    Column("field", String(40), nullable=False),
    Column("group_served", String(40), nullable=False),
    Column("order_id", String(40), index=True),
    Column("brand_team_id", String(20)),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("status", String(20), nullable=False),  # scheduled, completed, cancelled
    Column("people_served", Integer),
    Column("title", String(200), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("posts", JSON, nullable=False, default=list),  # [{post_id, title, required_skills}]
)

shifts = Table(
    "shifts",
    metadata,
    Column("shift_id", String(40), primary_key=True),
    Column("activity_id", String(40), nullable=False, index=True),
    Column("site_id", String(40), nullable=False),
    Column("org_path", String(200), nullable=False),
    Column("post_id", String(40)),
    Column("series_id", String(40), index=True),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False, index=True),
    Column("capacity", Integer, nullable=False),
    Column("geofence", JSON),  # {lat, lon, radius_m} or null
    Column("status", String(20), nullable=False),  # open, cancelled, closed
    Column("confirmed", Integer, nullable=False, default=0),
    Column("waitlisted", Integer, nullable=False, default=0),
)

signups = Table(
    "signups",
    metadata,
    Column("shift_id", String(40), primary_key=True),
    Column("volunteer_number", String(20), primary_key=True),
    Column("position", String(20), nullable=False),  # confirmed, waitlisted, withdrawn, cancelled
    Column("signed_up_at", UtcDateTime, nullable=False),
    Index("signups_by_volunteer", "volunteer_number", "shift_id"),
)

# What Beacon told a volunteer (a shift cancelled, a place freed): read by their app.
notices = Table(
    "notices",
    metadata,
    Column("notice_id", Integer, primary_key=True, autoincrement=True),
    Column("volunteer_number", String(20), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("shift_id", String(40)),
    Column("text", Text, nullable=False),
)

attendances = Table(
    "attendances",
    metadata,
    Column("shift_id", String(40), primary_key=True),
    Column("volunteer_number", String(20), primary_key=True),
    Column("checked_in_at", UtcDateTime, nullable=False),
    Column("checked_out_at", UtcDateTime),
    Column("minutes", Integer),
    Column("flag", String(40)),
    Index("attendances_by_volunteer", "volunteer_number", "checked_in_at"),
)

# One row per service record, kept in step with its events; `content` (what was done, in the
# organiser's or administrator's words) is free text and lives only here.
service_records = Table(
    "service_records",
    metadata,
    Column("record_id", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False),
    Column("activity_id", String(40), nullable=False, index=True),
    Column("shift_id", String(40)),
    Column("site_id", String(40), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),
    Column("field", String(40), nullable=False),
    Column("group_served", String(40), nullable=False),
    Column("source", String(20), nullable=False),  # attendance, admin_entry
    Column("status", String(20), nullable=False, index=True),  # recorded, confirmed, declined, revoked
    Column("service_date", Date, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=False),
    Column("recorded_minutes", Integer, nullable=False),
    Column("minutes", Integer, nullable=False),  # in effect now
    Column("hours", Numeric(8, 2), nullable=False),  # in effect now
    Column("counted_hours", Numeric(8, 2), nullable=False),  # hours while confirmed, else 0
    Column("flag", String(40)),
    Column("content", Text, nullable=False, default=""),
    Column("correction_pending", Boolean, nullable=False, default=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("one_record_per_attendance", "shift_id", "volunteer_number", unique=True),
    Index("service_records_by_volunteer", "volunteer_number", "started_at"),
)

# A volunteer's requests to correct a record, numbered per record, their explanation in their own
# words (never published), and the organiser's answer.
correction_requests = Table(
    "correction_requests",
    metadata,
    Column("record_id", String(20), primary_key=True),
    Column("request_no", Integer, primary_key=True),
    Column("volunteer_number", String(20), nullable=False),
    Column("requested_minutes", Integer),
    Column("reason", String(40), nullable=False),
    Column("explanation", Text, nullable=False, default=""),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("outcome", String(20)),  # granted, refused; null while it waits
    Column("decided_reason", String(40)),
    Column("decided_by", String(100)),
    Column("decided_at", UtcDateTime),
)

# Each district's rounding rules over time (the rounding_rule aggregate's events, one row per
# effective time: of two set for the same time, the later replaced the earlier).
rounding_rules = Table(
    "rounding_rules",
    metadata,
    Column("district_code", String(6), primary_key=True),
    Column("effective_from", UtcDateTime, primary_key=True),
    Column("bands", JSON, nullable=False),  # [{"below_minutes": 15, "hours": "0"}, ...]
    Column("set_by", String(100), nullable=False),
)

numbers = Counters(metadata)
next_number = numbers.next


async def save_volunteer(conn: AsyncConnection, volunteer: KnownVolunteer) -> None:
    values = {
        "volunteer_number": volunteer.volunteer_number,
        "community_code": volunteer.community_code,
        "org_path": "/".join(volunteer.org_path),
        "age_band": volunteer.age_band,
        "skills": ",".join(volunteer.skills),
        "status": volunteer.status,
    }
    statement = upsert(conn, volunteers).values(**values)
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["volunteer_number"]))


async def change_volunteer(conn: AsyncConnection, number: str, **values: object) -> None:
    """Raises LookupError when registry's registration has not reached us yet: retried later."""
    result = await conn.execute(update(volunteers).where(volunteers.c.volunteer_number == number).values(**values))
    if result.rowcount == 0:
        raise LookupError(f"volunteer {number} is not known here yet")


async def certify(conn: AsyncConnection, number: str, certification: str, expires_on: date | None) -> None:
    statement = upsert(conn, certifications).values(volunteer_number=number, certification=certification, expires_on=expires_on)
    await conn.execute(statement.on_conflict_do_update(index_elements=["volunteer_number", "certification"], set_={"expires_on": expires_on}))


async def uncertify(conn: AsyncConnection, number: str, certification: str) -> None:
    table = certifications
    await conn.execute(delete(table).where(table.c.volunteer_number == number, table.c.certification == certification))


async def save_site(
    conn: AsyncConnection, site_id: str, org_unit_code: str, org_path: tuple[str, ...], level: str, kind: str
) -> None:
    statement = upsert(conn, sites).values(
        site_id=site_id, org_unit_code=org_unit_code, org_path="/".join(org_path), level=level, kind=kind, open=True
    )
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["site_id"]))


async def close_site(conn: AsyncConnection, site_id: str) -> None:
    """Raises LookupError when registry's SiteOpened has not reached us yet: retried later."""
    result = await conn.execute(update(sites).where(sites.c.site_id == site_id).values(open=False))
    if result.rowcount == 0:
        raise LookupError(f"site {site_id} is not known here yet")


async def insure(conn: AsyncConnection, number: str, valid_from: date, valid_until: date) -> None:
    statement = upsert(conn, insurance).values(volunteer_number=number, valid_from=valid_from, valid_until=valid_until)
    await conn.execute(statement.on_conflict_do_nothing())
