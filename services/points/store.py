"""Points' tables and queries."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table

from shared.db import UtcDateTime
from shared.eventstore import EventStoreSchema

metadata = MetaData()
schema = EventStoreSchema(metadata)

accounts = Table(
    "accounts",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("district_code", String(6), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("opened_at", UtcDateTime, nullable=False),
)
