"""The event catalog for partners: the AsyncAPI documents and JSON Schemas under docs/events/ are
what the code generates, well formed, say who publishes and consumes what, and are what each
service serves at /asyncapi."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from shared.asyncapi import SERVICES, differences, generated, message_id, schema_file, service_app
from shared.catalog import catalog
from shared.events.points import StarLevelAwarded
from tests.infra.city_events import a_city

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"
REGENERATE = ".venv/bin/python -m shared.asyncapi --write docs/events"
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return generated()


def document(service: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{service}.asyncapi.json").read_text(encoding="utf-8"))


def test_the_committed_documents_are_what_the_code_generates(files) -> None:
    stale = differences(DOCS, files)
    assert stale == [], f"docs/events/ is out of date ({', '.join(stale)}): run {REGENERATE}"
    assert {f"{s}.asyncapi.json" for s in SERVICES} <= set(files)
    assert {schema_file(s) for s in catalog} == {name for name in files if name.startswith("schemas/")}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


@pytest.mark.parametrize("service", SERVICES)
def test_each_document_is_a_well_formed_asyncapi_3_document(service: str) -> None:
    doc = document(service)
    assert doc["asyncapi"] == "3.0.0" and doc["info"]["title"] == f"Beacon {service} events"
    for ref in _refs(doc):
        _resolve(doc, ref)
    for kind, entries in doc["components"].items():
        assert all(COMPONENT_KEY.match(key) for key in entries), kind
    for channel in doc["channels"].values():
        assert set(re.findall(r"\{(\w+)\}", channel["address"])) == set(channel.get("parameters", {}))
    for operation_id, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive")
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), operation_id
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(schema)  # AsyncAPI's schema format extends draft 7
        assert "$defs" not in schema, name  # hoisted: every reference is to components


def test_each_service_says_what_it_publishes_and_what_it_consumes_as_whom() -> None:
    registry, dispatch, points, reporting = (document(s) for s in SERVICES)
    published = {op for op in registry["operations"] if op.startswith("publish")}
    assert published == {f"publish{s.name}" for s in catalog if s.context == "registry"}
    # Registry reads dispatch's hour-bearing service-record events alone (to certify them).
    received = {op for op, o in registry["operations"].items() if o["action"] == "receive"}
    assert received == {
        f"registry-records-dispatch.{name}"
        for name in ("ServiceHoursConfirmed", "ServiceHoursAdjusted", "ServiceHoursRevoked")
    }
    assert registry["channels"]["DeadLetter"]["parameters"]["consumer"]["enum"] == ["registry-records-dispatch"]

    received = {op: o for op, o in dispatch["operations"].items() if o["action"] == "receive"}
    assert {"dispatch-registry.VolunteerRegistered", "dispatch-records-dispatch.VolunteerCheckedOut",
            "dispatch-time-bank-points.TimeCreditsReserved"} <= set(received)  # fmt: skip
    assert "dispatch-registry.TeamCreated" not in received  # dispatch has no handler for it
    assert dispatch["channels"]["DeadLetter"]["parameters"]["consumer"]["enum"] == [
        "dispatch-records-dispatch", "dispatch-registry", "dispatch-time-bank-points",
    ]  # fmt: skip

    ledger = points["operations"]["points-ledger.ServiceHoursConfirmed"]
    assert ledger["x-beacon-filter-subject"] == "dispatch.*.service_record.>"
    assert "points-ledger.OrderPlaced" not in points["operations"]
    assert "points-orders.OrderPlaced" in points["operations"]
    # Points publishes the current version only; the channel carries both.
    channel = points["channels"]["StarLevelAwarded"]
    assert channel["address"] == "points.{district}.account.star_level_awarded"
    assert list(channel["messages"]) == ["StarLevelAwarded.v1", "StarLevelAwarded.v2"]
    assert points["operations"]["publishStarLevelAwarded"]["messages"] == [
        {"$ref": "#/channels/StarLevelAwarded/messages/StarLevelAwarded.v2"}
    ]
    assert points["components"]["messages"]["StarLevelAwarded.v1"]["x-beacon-status"] == "superseded"
    v2 = points["components"]["schemas"]["StarLevelAwarded.v2"]
    assert set(v2["required"]) == {"volunteer_number", "star_level", "previous_star_level", "total_hours"}

    assert {o["action"] for op, o in reporting["operations"].items() if op != "deadLetter"} == {"receive"}
    reads_stars = reporting["operations"]["projection-figures.StarLevelAwarded"]
    assert len(reads_stars["messages"]) == 2  # it reads either version


def _validator(spec_file: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DOCS / spec_file).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_every_schema_file_takes_the_messages_beacon_publishes_and_only_those() -> None:
    city = a_city()
    envelopes = [envelope for events in city.by_context.values() for envelope, _ in events]
    assert len({e.type for e in envelopes}) >= 20
    for envelope in envelopes:
        message = json.loads(envelope.to_json())
        spec = catalog.lookup(envelope.type, envelope.schema_version)
        _validator(schema_file(spec)).validate(message)

    award = next(json.loads(e.to_json()) for e in envelopes if e.type == StarLevelAwarded.spec.name)
    assert award["schema_version"] == 2
    v1 = _validator(f"schemas/{message_id(catalog.lookup('StarLevelAwarded', 1))}.json")
    assert not v1.is_valid(award)  # a v2 message is not a v1 one
    old = award | {
        "schema_version": 1,
        "payload": {"volunteer_number": "V00000001", "level": 1, "previous_level": 0, "total_hours": "2"},
    }
    v1.validate(old)
    assert not _validator("schemas/StarLevelAwarded.v2.json").is_valid(old)
    for path in (DOCS / "schemas").glob("*.json"):
        _validator(f"schemas/{path.name}")  # each is a valid 2020-12 schema


async def test_every_service_serves_its_document_at_asyncapi_in_json_and_yaml(tmp_path: Path) -> None:
    for service in SERVICES:
        app = service_app(service, tmp_path)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{service}") as client:
            served = await client.get("/asyncapi")
            assert served.status_code == 200 and served.headers["content-type"] == "application/json"
            assert served.json() == document(service)
            committed_yaml = (DOCS / f"{service}.asyncapi.yaml").read_text(encoding="utf-8")
            for answer in (
                await client.get("/asyncapi", params={"format": "yaml"}),
                await client.get("/asyncapi.yaml"),
            ):
                assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/yaml")
                assert answer.text == committed_yaml and yaml.safe_load(answer.text) == document(service)
            unknown = await client.get("/asyncapi", params={"format": "xml"})
            assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "format"
