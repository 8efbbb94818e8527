"""Registry's insurance records through its HTTP API, over a real store (SQLite and PostgreSQL)
and NATS: recorded once as codes and dates, refused naming the field, published without any
personal data. (Dispatch following them: test_dispatch_orders_following_registry.)"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.registry.app import RegistrySettings, create_app
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN
from tests.infra.city import STAFF, TREE
from tests.infra.waiting import eventually

NAME, ID_NUMBER, PHONE = "王小明", resident_id("37030319900101123"), "13912340001"
INSURANCE = {"insurer": "picc", "cover": "accident", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}


@contextlib.asynccontextmanager
async def registry_app(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = RegistrySettings(
        nats_url=nats_url, database_url=database_url, personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry", headers=ADMIN) as client:
            yield client, app


@pytest.fixture
async def registry(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with registry_app(nats_url, database_url) as (client, app):
        response = await client.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"})
        assert response.status_code == 200, response.text
        yield client, app


async def register(client: httpx.AsyncClient) -> str:
    body = {"name": NAME, "id_number": ID_NUMBER, "phone": PHONE, "community_code": "370303001001", "consent": True}
    response = await client.post("/volunteers", json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()["volunteer_number"]


async def event_count(app: Any) -> int:
    events = app.state.registry.events
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


async def test_an_insurance_is_recorded_once_and_shown_with_the_volunteer(registry) -> None:
    client, app = registry
    number = await register(client)
    response = await client.post(f"/volunteers/{number}/insurance", json=INSURANCE, headers=STAFF)
    assert response.status_code == 200, response.text
    assert response.json()["insurance"] == [INSURANCE]
    before = await event_count(app)
    again = await client.post(f"/volunteers/{number}/insurance", json={**INSURANCE, "insurer": " PICC "}, headers=STAFF)
    assert again.status_code == 200 and again.json()["insurance"] == [INSURANCE]
    assert await event_count(app) == before  # the same record twice changes nothing
    renewal = {**INSURANCE, "valid_from": "2027-01-01", "valid_until": "2027-12-31"}
    assert (await client.post(f"/volunteers/{number}/insurance", json=renewal, headers=STAFF)).status_code == 200

    shown = (await client.get(f"/volunteers/{number}")).json()
    assert shown["insurance"] == [INSURANCE, renewal]
    history = (await client.get(f"/volunteers/{number}/history")).json()
    assert [h["type"] for h in history][-2:] == ["VolunteerInsured", "VolunteerInsured"]
    assert history[-1]["actor"] == "staff-7"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"valid_from": "2026-12-31", "valid_until": "2026-01-01"}, "valid_until"),
        ({"insurer": "中国人保"}, "insurer"),
        ({"cover": "PN 2026 0001"}, "cover"),
        ({"policy_number": "PN-2026-0001"}, "policy_number"),  # not taken: refused, not dropped
        ({"valid_until": "someday"}, "valid_until"),
    ],
)
async def test_a_bad_insurance_record_is_422_naming_the_field_and_leaves_no_event(registry, changes: dict, field: str) -> None:
    client, app = registry
    number = await register(client)
    before = await event_count(app)
    response = await client.post(f"/volunteers/{number}/insurance", json={**INSURANCE, **changes}, headers=STAFF)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == field
    assert await event_count(app) == before


async def test_an_unknown_or_deregistered_volunteer_is_not_insured(registry) -> None:
    client, _ = registry
    assert (await client.post("/volunteers/V99999999/insurance", json=INSURANCE)).status_code == 404
    number = await register(client)
    await client.post(f"/volunteers/{number}/deregister", json={"on_request": False})
    refused = await client.post(f"/volunteers/{number}/insurance", json=INSURANCE)
    assert refused.status_code == 409 and refused.json()["state"] == "deregistered"


async def test_the_insurance_event_reaches_the_registry_stream_without_personal_data(registry, js) -> None:
    client, app = registry
    number = await register(client)
    await client.post(f"/volunteers/{number}/insurance", json=INSURANCE, headers=STAFF)
    await eventually(lambda: app.state.registry.events.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("REGISTRY")
    messages = [await js.get_msg("REGISTRY", seq) for seq in range(1, info.state.last_seq + 1)]
    [insured] = [m for m in messages if m.subject.endswith(".volunteer.insured")]
    assert insured.subject == "registry.370303.volunteer.insured"
    body = json.loads(insured.data)
    assert body["payload"] == {"volunteer_number": number, **INSURANCE}
    text = json.dumps(body, ensure_ascii=False)
    for personal in (NAME, ID_NUMBER, PHONE):
        assert personal not in text
    assert date.fromisoformat(body["payload"]["valid_until"]) == date(2026, 12, 31)
