"""Dispatch's tables: its event store and its local view of volunteers."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Column, Date, MetaData, String, Table, delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch.domain import KnownVolunteer
from shared.db import upsert
from shared.eventstore import EventStoreSchema

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
