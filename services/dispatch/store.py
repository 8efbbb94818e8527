"""Dispatch's tables: its event store and its local view of volunteers."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table
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
)


async def save_volunteer(conn: AsyncConnection, volunteer: KnownVolunteer) -> None:
    values = {
        "volunteer_number": volunteer.volunteer_number,
        "community_code": volunteer.community_code,
        "org_path": "/".join(volunteer.org_path),
        "age_band": volunteer.age_band,
        "skills": ",".join(volunteer.skills),
    }
    statement = upsert(conn, volunteers).values(**values)
    await conn.execute(statement.on_conflict_do_update(index_elements=["volunteer_number"], set_=values))
