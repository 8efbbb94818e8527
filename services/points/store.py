"""Points' tables: the event store, the ledger's state and journal, rules, shop, known sites.

The state tables are what the events fold to, kept in the same transaction as the events, so
that a batch of a thousand credits reads and writes a few rows per volunteer, not histories.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
)

from shared.db import UtcDateTime
from shared.eventstore import EventStoreSchema, Position
from shared.numbering import Counters

metadata = MetaData()
schema = EventStoreSchema(metadata)
counters = Counters(metadata)

NEVER = date(9999, 12, 31)  # the lot of points that never expire (a key cannot be NULL)
HoursColumn = Numeric(10, 2, asdecimal=True)

accounts = Table(
    "accounts",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("district_code", String(6), nullable=False, index=True),
    Column("org_path", String(200), nullable=False),
    Column("version", Integer, nullable=False),  # the account aggregate's event version
    Column("balance", BigInteger, nullable=False, default=0),  # points available, minus any debt
    Column("debt", BigInteger, nullable=False, default=0),
    Column("hours", HoursColumn, nullable=False, default=0),
    Column("time_minutes", BigInteger, nullable=False, default=0),
    Column("time_debt", BigInteger, nullable=False, default=0),
    Column("star_level", Integer, nullable=False, default=0),
    Column("opened_at", UtcDateTime, nullable=False),
)

point_lots = Table(
    "point_lots",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("expires_on", Date, primary_key=True),
    Column("points", BigInteger, nullable=False),
    Index("ix_point_lots_expires_on", "expires_on"),
)

service_records = Table(
    "service_records",
    metadata,
    Column("record_id", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False),
    Column("service_district", String(6), nullable=False),
    Column("service_date", Date, nullable=False),
    Column("field", String(40), nullable=False),
    Column("group_served", String(40), nullable=False),
    Column("source", String(20), nullable=False),
    Column("rule_version", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("hours", HoursColumn, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("minutes", BigInteger, nullable=False),
    # What a volunteer earned on a day, for the daily cap, read from the index alone: a table of
    # day totals kept beside it took 15% of SQLite's time writing the ledger (5% of posting's).
    Index("ix_service_records_volunteer_day", "volunteer_number", "service_date", "points"),
)

# The double-entry journal: each row moves `amount` of `unit` from one account to another, as
# the event `event_id` (which says when) records.
journal = Table(
    "journal",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("from_account", String(60), nullable=False),
    Column("to_account", String(60), nullable=False),
    Column("unit", String(10), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Index("ix_journal_from", "from_account", "position"),
    Index("ix_journal_to", "to_account", "position"),
)

# Balances of the accounts that are not a volunteer's own (issuance, expiry, shops, time bank).
ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("account", String(60), primary_key=True),
    Column("unit", String(10), primary_key=True),
    Column("balance", BigInteger, nullable=False),
)

# Service events that cannot be applied yet (the volunteer's account is not open, or the
# record's confirmation has not arrived), in the order they came, until they can.
waiting = Table(
    "waiting",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("volunteer_number", String(20), nullable=False, index=True),
    Column("record_id", String(20), nullable=False, index=True),
    Column("envelope", LargeBinary, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("since", UtcDateTime, nullable=False),
)

points_rules = Table(
    "points_rules",
    metadata,
    Column("district_code", String(6), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("rule", JSON, nullable=False),
)

star_thresholds = Table(
    "star_thresholds",
    metadata,
    Column("city", String(10), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("hours", JSON, nullable=False),
)

known_sites = Table(
    "known_sites",
    metadata,
    Column("site_id", String(40), primary_key=True),
    Column("district_code", String(6), nullable=False),
    Column("org_path", String(200), nullable=False),
    Column("open", Integer, nullable=False),
)

shop_items = Table(
    "shop_items",
    metadata,
    Column("item_id", String(20), primary_key=True),
    Column("site_id", String(40), nullable=False, index=True),
    Column("name", String(80), nullable=False),
    Column("price_points", Integer, nullable=False),
    Column("stock", Integer, nullable=False),
    Column("withdrawn", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False),
)

redemptions = Table(
    "redemptions",
    metadata,
    Column("redemption_id", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False, index=True),
    Column("item_id", String(20), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("taken_from", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("reserved_at", UtcDateTime, nullable=False),
    Column("settled_at", UtcDateTime),
    Index("ix_redemptions_site", "site_id", "reserved_at"),
    UniqueConstraint("redemption_id", name="uq_redemption"),
)

# --- Time bank ---------------------------------------------------------------------------------------

family_links = Table(
    "family_links",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("member_number", String(20), primary_key=True),
    Column("relation", String(20), nullable=False),
)

# Minutes each volunteer gave to family in a calendar year, against the city's yearly limit.
time_gifts = Table(
    "time_gifts",
    metadata,
    Column("volunteer_number", String(20), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("minutes", BigInteger, nullable=False),
)

time_bank_limit = Table(
    "time_bank_limit",
    metadata,
    Column("city", String(10), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("minutes_per_year", BigInteger, nullable=False),
)

reservations = Table(
    "time_credit_reservations",
    metadata,
    Column("reservation_id", String(20), primary_key=True),
    Column("volunteer_number", String(20), nullable=False, index=True),
    Column("beneficiary_number", String(20), nullable=False),
    Column("minutes", BigInteger, nullable=False),
    Column("state", String(20), nullable=False),  # held, spent, released
    Column("order_id", String(40), index=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("reserved_at", UtcDateTime, nullable=False),
    Column("settled_at", UtcDateTime),
)
