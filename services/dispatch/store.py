"""Dispatch's tables: its event store, its local view of volunteers, and its view of orders (with
the free text that never goes into an event: description, address, the resident's comment)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table, Text, delete, update
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
