"""The fast paths of the ledger's events: an envelope encoded without a model reads back as the
one the catalog builds, and a followed envelope is read by the same rules as `EventEnvelope`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from shared.catalog import Event, InvalidEvent, catalog
from shared.events.points import (
    LotShare,
    PointsExpired,
    RedemptionReserved,
    ServiceChange,
    ServiceCredited,
    StarLevelAwarded,
    TimeCreditsTransferred,
)
from shared.eventstore import encode
from shared.logs import correlated
from tests.factories import PATH, registered_envelope

AT = datetime(2026, 11, 23, 4, 5, 6, 789, tzinfo=UTC)
CAUSE = UUID("01a20c00-c429-777a-9aca-aeb15b4b8113")

EVENTS: list[Event] = [
    ServiceCredited(
        volunteer_number="V00000001", record_id="R0000000001", change=ServiceChange.confirmed,
        service_date=date(2026, 11, 22), service_district="370303", rule_version=0, hours=Decimal("1.50"),
        points=15, time_credit_minutes=90, total_hours=Decimal("10.5"), expires_on=date(2027, 12, 31),
        capped_from=None, debt_repaid=0,
    ),
    StarLevelAwarded(volunteer_number="V00000001", star_level=2, previous_star_level=0, total_hours=Decimal(300)),
    PointsExpired(volunteer_number="V00000001", points=7, expires_on=date(2026, 12, 31)),
    RedemptionReserved(
        redemption_id="RD00000001", volunteer_number="V00000001", item_id="I00000001", site_id="S-370303001001",
        quantity=1, points=30, taken_from=[LotShare(expires_on=date(2026, 12, 31), points=20), LotShare(expires_on=None, points=10)],
        at=datetime(2026, 11, 23, 12, tzinfo=timezone(timedelta(hours=8))),
    ),
    TimeCreditsTransferred(volunteer_number="V00000001", member_number="V00000002", minutes=60, year=2026, given_this_year=60),
]  # fmt: skip


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_an_encoded_event_reads_back_as_the_catalog_envelope_of_it(event: Event) -> None:
    encoded = encode(
        catalog, event, aggregate_id="V00000001", aggregate_version=3, org_path=PATH, actor="system:points", at=AT,
        correlation_id=CAUSE, causation_id=CAUSE,
    )  # fmt: skip
    envelope, payload = catalog.parse(encoded.body)
    built = catalog.envelope(
        event, aggregate_id="V00000001", aggregate_version=3, org_path=PATH, actor="system:points",
        correlation_id=CAUSE, causation_id=CAUSE, occurred_at=AT,
    )  # fmt: skip
    assert payload == event
    unique = {"event_id", "recorded_at"}
    assert envelope.model_dump(exclude=unique) == built.model_dump(exclude=unique)
    assert json.loads(encoded.body)["payload"] == json.loads(event.model_dump_json())
    assert (encoded.event_id, encoded.subject) == (str(envelope.event_id), catalog.subject_of(envelope))
    assert (encoded.aggregate_type, encoded.aggregate_version, encoded.occurred_at) == (built.aggregate_type, 3, AT)
    assert UUID(encoded.event_id).version == 7  # time-ordered, as every event id


def test_an_encoded_event_without_a_cause_starts_or_joins_the_current_correlation() -> None:
    event = EVENTS[2]
    alone = encode(catalog, event, aggregate_id="V00000001", aggregate_version=1, org_path=PATH, actor="t", at=AT)
    assert alone.correlation_id == alone.event_id
    with correlated(CAUSE):
        joined = encode(catalog, event, aggregate_id="V00000001", aggregate_version=1, org_path=PATH, actor="t", at=AT)
    assert str(joined.correlation_id) == str(CAUSE)
    assert catalog.parse_envelope(joined.body).causation_id is None


def test_a_followed_envelope_holds_every_field_and_gives_the_envelope_back() -> None:
    envelope = registered_envelope(7)
    followed = catalog.parse_followed(envelope.to_json())
    assert (followed.event_id, followed.aggregate_version, followed.correlation_id) == (
        envelope.event_id, envelope.aggregate_version, envelope.correlation_id,
    )  # fmt: skip
    assert followed.district_code == envelope.district_code and followed.occurred_at == envelope.occurred_at
    assert catalog.payload_under(followed) == catalog.payload_of(envelope)  # type: ignore[arg-type]
    assert catalog.parse_envelope(followed.to_json()) == envelope


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("occurred_at", "2026-11-23T08:00:00", "timezone.*occurred_at"),
        ("recorded_at", None, "recorded_at"),
        ("org_path", ["zhangdian"], "org_path"),
        ("org_path", [], "org_path"),
        ("schema_version", 0, "schema_version"),
        ("aggregate_version", 0, "aggregate_version"),
        ("actor", "", "actor"),
        ("correlation_id", "not-a-uuid", "correlation_id"),
        ("smuggled", "x", "smuggled"),
    ],
)
def test_a_followed_envelope_is_held_to_the_envelope_rules(field: str, value: object, reason: str) -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw[field] = value
    with pytest.raises(InvalidEvent, match=f"malformed envelope.*{reason}"):
        catalog.parse_followed(json.dumps(raw).encode())
    with pytest.raises(InvalidEvent):
        catalog.parse_envelope(json.dumps(raw))  # the model refuses it too
