"""Registry's tables (views kept in the same transaction as its events) and queries."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry.domain import OrgUnit
from shared.db import UtcDateTime
from shared.events.common import OrgLevel
from shared.eventstore import EventStoreSchema

metadata = MetaData()
schema = EventStoreSchema(metadata)

org_units = Table(
    "org_units",
    metadata,
    Column("code", String(15), primary_key=True),
    Column("parent_code", String(15), index=True),
    Column("level", String(20), nullable=False),
    Column("name", String(100), nullable=False),
    Column("population", Integer, nullable=False),
    Column("party_members", Integer, nullable=False),
    Column("path", String(200), nullable=False),
)

sites = Table(
    "sites",
    metadata,
    Column("site_id", String(40), primary_key=True),
    Column("org_unit_code", String(15), nullable=False, index=True),
    Column("level", String(20), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("name", String(100), nullable=False),
)

# Personal data lives here only, never in events. (Encryption at rest comes with issue 3.)
volunteers = Table(
    "volunteers",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("id_number", String(18), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("community_code", String(15), nullable=False, index=True),
    Column("political_status", String(20), nullable=False),
    Column("skills", String(500), nullable=False),
    Column("status", String(20), nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
)


async def find_org_unit(conn: AsyncConnection, code: str) -> OrgUnit | None:
    row = (await conn.execute(select(org_units.c.code, org_units.c.level, org_units.c.path).where(org_units.c.code == code))).first()
    if row is None:
        return None
    return OrgUnit(row.code, OrgLevel(row.level), tuple(row.path.split("/")))


async def holder_of_id_number(conn: AsyncConnection, id_number: str) -> str | None:
    return await conn.scalar(select(volunteers.c.volunteer_number).where(volunteers.c.id_number == id_number))


async def next_volunteer_number(conn: AsyncConnection) -> str:
    # Serialised by the write transaction on SQLite; on PostgreSQL a race ends in the
    # primary key's conflict, which the caller sees as a 409 to retry.
    count = await conn.scalar(select(func.count()).select_from(volunteers)) or 0
    return f"V{count + 1:08d}"
