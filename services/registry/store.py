"""Registry's tables: views kept in the same transaction as its events, and their queries.

Personal data lives only in `volunteers` and `accounts` (sealed or hashed, see vault.py) and
never in events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry.domain.org import OrgUnit, Site
from shared.db import UtcDateTime
from shared.events.common import OrgLevel, SiteLevel
from shared.eventstore import EventStoreSchema
from shared.numbering import Counters

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
    Column("path", String(200), nullable=False, index=True),
)

sites = Table(
    "sites",
    metadata,
    Column("site_id", String(40), primary_key=True),
    Column("org_unit_code", String(15), nullable=False, index=True),
    Column("path", String(200), nullable=False),
    Column("level", String(20), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("name", String(100), nullable=False),
    Column("opened_on", Date, nullable=False),
    Column("closed_on", Date),
)

volunteers = Table(
    "volunteers",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    # Keyed hash of the ID number: finds a second registration without storing the number.
    Column("id_index", String(64), unique=True),
    Column("name_sealed", LargeBinary),
    Column("id_number_sealed", LargeBinary),
    Column("phone_sealed", LargeBinary),
    Column("community_code", String(15), nullable=False, index=True),
    Column("org_path", String(200), nullable=False, index=True),
    Column("political_status", String(20), nullable=False, index=True),
    Column("age_band", String(10), nullable=False),
    Column("gender", String(10), nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("tags", String(300), nullable=False, default=""),  # free tags, "|"-separated
    Column("reported_in_at", String(15)),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("consented_at", UtcDateTime),
    Column("personal_data_destroyed", Boolean, nullable=False, default=False),
)

# One key per volunteer; deleting the row makes their sealed personal data unreadable.
volunteer_keys = Table(
    "volunteer_keys",
    metadata,
    Column("volunteer_number", String(20), ForeignKey("volunteers.volunteer_number"), primary_key=True),
    Column("sealed_key", LargeBinary, nullable=False),
)

volunteer_skills = Table(
    "volunteer_skills",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("skill", String(40), primary_key=True, index=True),
)

certifications = Table(
    "certifications",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("certification", String(40), primary_key=True, index=True),
    Column("granted_on", Date, nullable=False),
    Column("expires_on", Date, index=True),
)

# Insurance records (risky work needs one): codes and dates, never a policy number or a name.
insurance = Table(
    "insurance",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("insurer", String(40), primary_key=True),
    Column("cover", String(40), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("valid_until", Date, primary_key=True),
)

teams = Table(
    "teams",
    metadata,
    Column("team_id", String(12), primary_key=True),
    Column("site_id", String(40), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("field", String(40)),
    Column("description", String(2000), nullable=False, default=""),
    Column("capacity", Integer, nullable=False),
    Column("leader_number", String(20), nullable=False),
    Column("dissolved", Boolean, nullable=False, default=False),
)

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", String(12), primary_key=True),
    Column("volunteer_number", String(20), primary_key=True, index=True),
    Column("state", String(12), nullable=False),  # member, applied, invited
)

training_sessions = Table(
    "training_sessions",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("site_id", String(40), nullable=False, index=True),
    Column("topic", String(40), nullable=False),
    Column("held_on", Date, nullable=False),
    Column("hours", Float, nullable=False),
    Column("trainer", String(100), nullable=False),  # a person's name: kept here, not in events
)

training_attendance = Table(
    "training_attendance",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("volunteer_number", String(20), primary_key=True, index=True),
)


async def find_org_unit(conn: AsyncConnection, code: str) -> OrgUnit | None:
    row = (await conn.execute(select(org_units).where(org_units.c.code == code))).mappings().first()
    if row is None:
        return None
    return OrgUnit(row["code"], OrgLevel(row["level"]), tuple(row["path"].split("/")), row["parent_code"], row["name"])


async def find_site(conn: AsyncConnection, site_id: str) -> Site | None:
    row = (await conn.execute(select(sites).where(sites.c.site_id == site_id))).mappings().first()
    if row is None:
        return None
    return Site(row["site_id"], row["org_unit_code"], SiteLevel(row["level"]), tuple(row["path"].split("/")), row["closed_on"] is not None)


class IdHolder(NamedTuple):
    """The volunteer an ID number is registered to, and where (to tell whom the number may be shown)."""

    volunteer_number: str
    org_path: tuple[str, ...]


async def holder_of_id_index(conn: AsyncConnection, id_index: str) -> IdHolder | None:
    return (await holders_of_id_indexes(conn, [id_index])).get(id_index)


# Sign-in accounts. The row holds what events must not: the username (a keyed hash to find it by,
# and sealed) and the argon2 hash of the password. Role, scope and state follow the events.
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(12), primary_key=True),
    # Released (NULL) when the account closes, so that its holder may use the name again.
    Column("username_index", String(64), unique=True),
    Column("username_sealed", LargeBinary, nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("password_temporary", Boolean, nullable=False, default=False),
    Column("role", String(20), nullable=False),
    Column("scope", String(20), nullable=False),
    Column("org_path", String(200), nullable=False),  # where the scope lay when it was granted
    Column("state", String(10), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
)

# Refresh tokens, by the SHA-256 of the token (the token itself is never stored). A sign-in starts
# a family; each refresh retires its token and adds the next one to the family.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(32), nullable=False, index=True),
    Column("account_id", String(12), nullable=False, index=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)

# Failed sign-ins in a row, by the keyed hash of the username tried, whether an account has it
# or not (so that a lock-out says nothing about which usernames exist).
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("username_index", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("first_failed_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, index=True),
)


# Service records as dispatch publishes them (subscribers.py follows its hour-bearing events): what
# a certificate may cover. A record's row follows its newest event (`version`); an older one that
# arrives late changes nothing.
service_records = Table(
    "service_records",
    metadata,
    Column("record_id", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False),
    Column("event_id", String(36), nullable=False),  # the event that set what it counts now
    Column("version", Integer, nullable=False),
    Column("state", String(10), nullable=False),  # confirmed, revoked
    Column("service_date", Date, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("hours", Numeric(8, 2), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("activity_id", String(40), nullable=False),
    Column("field", String(40), nullable=False),
    Column("group_served", String(30), nullable=False),
    Index("ix_service_records_volunteer_date", "volunteer_number", "service_date"),
)

# Certificates (志愿服务记录证明) and the records each covers, as they stood when it was issued.
certificates = Table(
    "certificates",
    metadata,
    Column("certificate_number", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False, index=True),
    Column("period_from", Date, nullable=False),
    Column("period_to", Date, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("issuer_code", String(40), nullable=False),
    Column("issuer_name", String(100), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("total_minutes", Integer, nullable=False),
    Column("total_hours", Numeric(10, 2), nullable=False),
    Column("digest", String(64), nullable=False),
)

certificate_records = Table(
    "certificate_records",
    metadata,
    Column("certificate_number", String(20), primary_key=True),
    Column("record_id", String(20), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("service_date", Date, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("hours", Numeric(8, 2), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("activity_id", String(40), nullable=False),
    Column("field", String(40), nullable=False),
    Column("group_served", String(30), nullable=False),
)


numbers = Counters(metadata)
counters = numbers.table
next_number = numbers.next
reserve_numbers = numbers.reserve
give_back_numbers = numbers.give_back


async def find_org_units(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, OrgUnit]:
    """Many org units in one query (a bulk import looks its communities up once per batch)."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = (await conn.execute(select(org_units).where(org_units.c.code.in_(wanted)))).mappings()
    return {
        row["code"]: OrgUnit(row["code"], OrgLevel(row["level"]), tuple(row["path"].split("/")), row["parent_code"], row["name"])
        for row in rows
    }


async def holders_of_id_indexes(conn: AsyncConnection, id_indexes: Iterable[str]) -> dict[str, IdHolder]:
    """The volunteers already holding any of these ID-number hashes, in one query."""
    wanted = sorted(set(id_indexes))
    if not wanted:
        return {}
    # On PostgreSQL the hashes are written into the statement, not bound: the generic plan of a
    # prepared IN of 500 parameters, made while the table was small, scans the whole table ever
    # after (an import slowed from 4,600 to 800 rows/s by 100k rows). SQLite keeps its own plan
    # per statement text, so there they stay bound (128 cached texts of 500 literals cost 20 MB).
    literal = conn.dialect.name == "postgresql"
    wanted_here = bindparam("id_indexes", wanted, expanding=True, literal_execute=literal)
    rows = await conn.execute(
        select(volunteers.c.id_index, volunteers.c.volunteer_number, volunteers.c.org_path).where(
            volunteers.c.id_index.in_(wanted_here)
        )
    )
    return {row.id_index: IdHolder(row.volunteer_number, tuple(row.org_path.split("/"))) for row in rows}
