"""Schema evolution: a superseded event version stays readable, as the current version, through
the upcaster the catalog holds for it; producers publish only the current version."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared.catalog import Event, EventCatalog, EventRejected, InvalidEvent, catalog
from shared.envelope import EventEnvelope
from shared.events.points import (
    StarLevelAwarded,
    StarLevelAwardedV1,
    StarLevelLowered,
    StarLevelLoweredV1,
    star_levels_renamed,
)
from tests.factories import PATH


def old_producers_envelope(payload: dict, name: str = "StarLevelAwarded") -> EventEnvelope:
    """What points published before version 2: the same envelope, schema_version 1."""
    current = catalog.envelope(
        StarLevelAwarded(volunteer_number="V00000001", star_level=1, previous_star_level=0, total_hours=Decimal(2)),
        aggregate_id="V00000001", aggregate_version=3, org_path=PATH, actor="system:points",
    )  # fmt: skip
    return current.model_copy(update={"type": name, "schema_version": 1, "payload": payload})


def test_upcasting_a_v1_star_award_gives_the_v2_payload() -> None:
    v1 = {"volunteer_number": "V00000007", "level": 3, "previous_level": 1, "total_hours": "52.50"}
    assert star_levels_renamed(v1) == {
        "volunteer_number": "V00000007", "star_level": 3, "previous_star_level": 1, "total_hours": "52.50",
    }  # fmt: skip
    envelope = old_producers_envelope(v1)
    read = catalog.payload_of(envelope)
    assert read == StarLevelAwarded(
        volunteer_number="V00000007", star_level=3, previous_star_level=1, total_hours=Decimal("52.50")
    )
    assert type(read) is StarLevelAwarded  # a reader matches on the current class only


def test_a_v1_message_read_by_its_header_comes_out_as_v2_too() -> None:
    envelope = old_producers_envelope(
        {"volunteer_number": "V00000007", "level": 0, "previous_level": 2, "total_hours": "1"}, "StarLevelLowered"
    )
    header = catalog.parse_header(envelope.to_json())
    assert header.schema_version == 1
    assert catalog.payload_under(header) == StarLevelLowered(
        volunteer_number="V00000007", star_level=0, previous_star_level=2, total_hours=Decimal(1)
    )


def test_a_current_message_is_read_as_it_is() -> None:
    event = StarLevelAwarded(volunteer_number="V00000001", star_level=2, previous_star_level=1, total_hours=Decimal(9))
    envelope = catalog.envelope(event, aggregate_id="V00000001", aggregate_version=1, org_path=PATH, actor="t")
    assert envelope.schema_version == 2 and envelope.payload["star_level"] == 2
    assert catalog.parse(envelope.to_json())[1] == event


def test_an_invalid_v1_payload_is_refused_naming_its_version_and_field() -> None:
    bad = old_producers_envelope({"volunteer_number": "V00000007", "level": 9, "previous_level": 1, "total_hours": "1"})
    with pytest.raises(InvalidEvent, match=r"StarLevelAwarded v1 payload: level"):
        catalog.parse(bad.to_json())
    # A v2-shaped payload under version 1 is not v1.
    mislabelled = old_producers_envelope(
        {"volunteer_number": "V00000007", "star_level": 1, "previous_star_level": 0, "total_hours": "1"}
    )
    with pytest.raises(InvalidEvent, match="level"):
        catalog.parse(mislabelled.to_json())


def test_a_superseded_version_cannot_be_published() -> None:
    old = StarLevelAwardedV1(volunteer_number="V00000001", level=1, previous_level=0, total_hours=Decimal(2))
    with pytest.raises(ValueError, match="StarLevelAwarded v1 is superseded: publish v2"):
        catalog.envelope(old, aggregate_id="V00000001", aggregate_version=1, org_path=PATH, actor="t")


def test_every_superseded_version_has_an_upcaster_and_keeps_its_subject() -> None:
    assert catalog.missing_upcasters() == []
    for old, new in ((StarLevelAwardedV1, StarLevelAwarded), (StarLevelLoweredV1, StarLevelLowered)):
        assert (old.spec.name, old.spec.version, new.spec.version) == (new.spec.name, 1, 2)
        assert old.spec.subject("370303") == new.spec.subject("370303")
        assert catalog.latest(new.spec.name) is new.spec and catalog.superseded(old.spec)


def test_versioning_rules_of_the_catalog() -> None:
    local = EventCatalog()

    @local.register(context="test", aggregate="thing", action="done", version=1, name="ThingDone")
    class ThingDoneV1(Event):
        """A thing was done, by someone."""

        by: str

    @local.register(context="test", aggregate="thing", action="done", version=2)
    class ThingDone(Event):
        """A thing was done, by someone, somewhere."""

        by: str
        where: str

    with pytest.raises(ValueError, match="must keep the subject"):

        @local.register(context="test", aggregate="thing", action="redone", version=3, name="ThingDone")
        class ThingDoneElsewhere(Event):
            """A thing was done again, somewhere else."""

    with pytest.raises(ValueError, match="from one version of an event to the next"):
        local.upcaster(ThingDone, ThingDoneV1)
    assert local.missing_upcasters() == ["ThingDone v1"]
    raw = json.dumps({**json.loads(_envelope_json()), "type": "ThingDone", "payload": {"by": "x"}})
    with pytest.raises(EventRejected, match="no upcaster"):
        local.parse(raw)

    @local.upcaster(ThingDoneV1, ThingDone)
    def _where_unknown(payload: dict) -> dict:
        return payload | {"where": "unknown"}

    assert local.missing_upcasters() == []
    assert local.parse(raw)[1] == ThingDone(by="x", where="unknown")
    with pytest.raises(ValueError, match="has an upcaster already"):
        local.upcaster(ThingDoneV1, ThingDone)(_where_unknown)


def _envelope_json() -> bytes:
    return old_producers_envelope({}).to_json()


def test_a_version_registered_after_a_header_was_read_makes_the_older_one_upcast() -> None:
    local = EventCatalog()

    @local.register(context="test", aggregate="thing", action="done", version=1, name="ThingDone")
    class ThingDoneV1(Event):
        """A thing was done, by someone."""

        by: str

    raw = json.dumps({**json.loads(_envelope_json()), "type": "ThingDone", "payload": {"by": "x"}}).encode()
    assert local.payload_under(local.parse_header(raw)) == ThingDoneV1(by="x")

    @local.register(context="test", aggregate="thing", action="done", version=2)
    class ThingDone(Event):
        """A thing was done, by someone, somewhere."""

        by: str
        where: str

    @local.upcaster(ThingDoneV1, ThingDone)
    def _where_unknown(payload: dict) -> dict:
        return payload | {"where": "unknown"}

    assert local.payload_under(local.parse_header(raw)) == ThingDone(by="x", where="unknown")
