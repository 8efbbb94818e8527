"""The event envelope and catalog: what is accepted, and why the rest is refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.catalog import Event, EventCatalog, InvalidEvent, UnknownEventType, UnknownSchemaVersion, catalog
from shared.envelope import EventEnvelope
from shared.events.registry import VolunteerRegistered
from tests.factories import PATH, registered, registered_envelope


def test_an_event_round_trips_through_its_envelope() -> None:
    envelope = registered_envelope(7)
    parsed, event = catalog.parse(envelope.to_json())
    assert parsed == envelope
    assert event == registered(7)
    assert parsed.event_id.version == 7  # time-ordered ids
    assert parsed.correlation_id == parsed.event_id and parsed.causation_id is None


def test_the_subject_carries_context_district_aggregate_and_action() -> None:
    assert catalog.subject_of(registered_envelope(1)) == "registry.370303.volunteer.registered"
    assert VolunteerRegistered.spec.subject("370305") == "registry.370305.volunteer.registered"


def test_an_unknown_type_is_refused_by_name() -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw["type"] = "VolunteerTeleported"
    with pytest.raises(UnknownEventType, match="VolunteerTeleported"):
        catalog.parse(json.dumps(raw))


def test_a_newer_schema_version_is_refused_naming_the_known_ones() -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw["schema_version"] = 3
    with pytest.raises(UnknownSchemaVersion, match=r"version 3 is not known here \(known: 1\)"):
        catalog.parse(json.dumps(raw))


def test_an_invalid_payload_is_refused_naming_the_field() -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw["payload"]["volunteer_number"] = "110105198001010011"  # an ID number where a volunteer number goes
    with pytest.raises(InvalidEvent, match="volunteer_number") as refused:
        catalog.parse(json.dumps(raw))
    assert refused.value.envelope is not None


def test_a_payload_with_unknown_fields_is_refused() -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw["payload"]["phone"] = "13812345678"
    with pytest.raises(InvalidEvent, match="phone"):
        catalog.parse(json.dumps(raw))


def test_a_malformed_envelope_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="malformed envelope"):
        catalog.parse(b"[1, 2]")


def test_envelope_times_must_carry_a_zone_and_are_kept_in_utc() -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw["occurred_at"] = "2026-11-23T08:00:00+08:00"
    envelope = EventEnvelope.model_validate(raw)
    assert envelope.occurred_at == datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
    assert envelope.occurred_at.utcoffset() == timedelta(0)
    raw["occurred_at"] = "2026-11-23T08:00:00"
    with pytest.raises(ValidationError, match="occurred_at"):
        EventEnvelope.model_validate(raw)


@pytest.mark.parametrize("code", ["zhangdian", "３７０３０３", "370303\n", ""])
def test_org_paths_hold_division_codes_only(code: str) -> None:
    with pytest.raises(ValidationError, match="division codes"):
        catalog.envelope(registered(1), aggregate_id="V00000001", aggregate_version=1, org_path=(code,), actor="t")
    assert registered_envelope(1).district_code == PATH[0]


def test_a_header_reads_what_a_projection_folds_by_and_its_payload_only_when_asked() -> None:
    envelope = registered_envelope(7)
    header = catalog.parse_header(envelope.to_json())
    assert (header.type, header.schema_version, header.org_path) == ("VolunteerRegistered", 1, PATH)
    assert header.occurred_at == envelope.occurred_at and header.district_code == PATH[0]
    assert catalog.payload_under(header) == registered(7)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("occurred_at", "2026-11-23T08:00:00", "timezone.*occurred_at"),
        ("org_path", ["zhangdian"], "org_path"),
        ("org_path", ["３７０３０３"], "org_path"),  # full-width digits
        ("org_path", ["370303\n"], "org_path"),
        ("org_path", [], "org_path"),
        ("schema_version", 0, "schema_version"),
        ("type", None, "type"),
    ],
)
def test_a_header_is_held_to_the_envelope_rules(field: str, value: object, reason: str) -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw[field] = value
    with pytest.raises(InvalidEvent, match=f"malformed envelope.*{reason}"):
        catalog.parse_header(json.dumps(raw).encode())
    with pytest.raises(InvalidEvent, match="malformed envelope"):
        catalog.parse_header(b"[1, 2]")


def test_a_header_payload_is_validated_as_the_whole_envelope_would_be() -> None:
    raw = json.loads(registered_envelope(1).to_json())
    raw["payload"]["phone"] = "13812345678"
    with pytest.raises(InvalidEvent, match="phone"):
        catalog.payload_under(catalog.parse_header(json.dumps(raw).encode()))
    raw["schema_version"] = 3
    with pytest.raises(UnknownSchemaVersion, match="version 3"):
        catalog.payload_under(catalog.parse_header(json.dumps(raw).encode()))


def test_registration_rules_of_the_catalog() -> None:
    local = EventCatalog()

    with pytest.raises(ValueError, match="docstring"):

        @local.register(context="test", aggregate="thing", action="done")
        class Undocumented(Event):
            pass

    @local.register(context="test", aggregate="thing", action="done")
    class ThingDone(Event):
        """A thing was done."""

    with pytest.raises(ValueError, match="registered twice"):
        local.register(context="test", aggregate="thing", action="done")(ThingDone)
    with pytest.raises(ValueError, match="lower case"):
        local.register(context="Test", aggregate="thing", action="done")
    assert [s.name for s in local] == ["ThingDone"]


def test_every_public_event_is_documented_and_has_a_json_schema() -> None:
    schemas = catalog.json_schemas()
    assert {"VolunteerRegistered.v1", "OrgUnitCreated.v1", "SiteOpened.v1", "PointsAccountOpened.v1"} <= set(schemas)
    for spec in catalog:
        assert spec.model.__doc__ and len(spec.model.__doc__.split()) >= 8, spec.name
