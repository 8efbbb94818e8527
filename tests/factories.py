"""Builders of valid test data."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData

from shared.catalog import catalog
from shared.db import make_engine
from shared.envelope import EventEnvelope
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore, EventStoreSchema

CONSENTED = datetime(2026, 1, 1, tzinfo=UTC)

DISTRICT = "370303"
STREET = "370303001000"
COMMUNITY = "370303001001"
PATH = (DISTRICT, STREET, COMMUNITY)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(first17: str) -> str:
    """A valid resident ID number from its first 17 digits (adds the check character)."""
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def registered(n: int, *, party: bool = False) -> VolunteerRegistered:
    return VolunteerRegistered(
        volunteer_number=f"V{n:08d}",
        community_code=COMMUNITY,
        age_band="35_59",
        gender="female" if n % 2 else "male",
        political_status="party_member" if party else "masses",
        skills=["first_aid"],
        consented_at=CONSENTED,
    )


def registered_envelope(n: int, **options: object) -> EventEnvelope:
    return catalog.envelope(registered(n, **options), aggregate_id=f"V{n:08d}", aggregate_version=1, org_path=PATH, actor="test")


def event_store(database_url: str) -> EventStore:
    return EventStore(make_engine(database_url), EventStoreSchema(MetaData()))


# Personal-data keys for tests only (base64 of 32 bytes each).
TEST_PERSONAL_DATA_KEY = "dGVzdC1vbmx5LXBlcnNvbmFsLWRhdGEta2V5LTMyYnk="
TEST_ID_INDEX_KEY = "dGVzdC1vbmx5LWlkLWluZGV4LWtleS0tLTMyLWJ5dGU="
