"""Dispatch's orders through its HTTP API, over a real store (SQLite and PostgreSQL) and NATS: the
order lifecycle, idempotent and refused commands, the time-out job, publication on the district's
subject, free text kept out of events, and ranked suggestions."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch import store
from services.dispatch.app import create_app
from services.dispatch.domain import KnownVolunteer
from services.dispatch.handlers import orders as handlers
from shared.envelope import utcnow
from shared.settings import ServiceSettings
from tests.infra.waiting import eventually

STAFF = {"X-Beacon-Actor": "staff-7", "X-Beacon-Roles": "station_staff"}
COMMUNITY = "370303001001"
SITE = "ST-HEPING"
DESCRIPTION = "帮王奶奶学用智能手机挂号"
ADDRESS = "和平小区3号楼2单元501"
COMMENT = "小李很耐心，谢谢"


@contextlib.asynccontextmanager
async def dispatch_app(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=database_url))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://dispatch") as client:
        yield client, app


@pytest.fixture
async def dispatch(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with dispatch_app(nats_url, database_url) as running:
        yield running


def new_order(**changes: object) -> dict[str, object]:
    start = utcnow() + timedelta(days=1)
    return {
        "kind": "order",
        "group_served": "elderly",
        "field": "smart_help_for_elderly",
        "community_code": COMMUNITY,
        "site_id": SITE,
        "description": DESCRIPTION,
        "address": ADDRESS,
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=2)).isoformat(),
        "headcount": 1,
        "required_skills": ["elder_care"],
        "placed_via": "community_staff",
        **changes,
    }


async def place(client: httpx.AsyncClient, **changes: object) -> str:
    response = await client.post("/orders", json=new_order(**changes), headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()["order_id"]


async def send(client: httpx.AsyncClient, order_id: str, to: list[str], deadline: datetime | None = None) -> httpx.Response:
    deadline = deadline or utcnow() + timedelta(hours=4)
    body = {"volunteer_numbers": to, "site_id": SITE, "deadline": deadline.isoformat()}
    return await client.post(f"/orders/{order_id}/dispatch", json=body, headers=STAFF)


async def event_count(app: Any) -> int:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


async def all_event_bodies(app: Any) -> list[str]:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return [row.envelope if isinstance(row.envelope, str) else row.envelope.decode() for row in await conn.execute(select(events.schema.events.c.envelope))]


def field_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


async def test_an_order_goes_from_placing_through_a_decline_and_redispatch_to_acceptance_completion_and_rating(dispatch) -> None:
    client, app = dispatch
    order_id = await place(client)
    assert order_id == "O00000001"
    placed = (await client.get(f"/orders/{order_id}")).json()
    assert (placed["status"], placed["org_path"], placed["description"], placed["address"]) == (
        "placed", ["370303", "370303001000", COMMUNITY], DESCRIPTION, ADDRESS
    )

    dispatched = await send(client, order_id, ["V000001"])
    assert dispatched.status_code == 200 and dispatched.json()["status"] == "dispatched", dispatched.text
    declined = await client.post(f"/orders/{order_id}/decline", json={"by": "V000001", "reason": "unavailable"})
    assert declined.status_code == 200 and declined.json()["status"] == "placed"
    redispatched = await send(client, order_id, ["V000002"])
    assert redispatched.json()["attempts"] == 2
    accepted = await client.post(f"/orders/{order_id}/accept", json={"by": "V000002"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    before = await event_count(app)
    again = await client.post(f"/orders/{order_id}/accept", json={"by": "V000002"})
    assert again.status_code == 200 and again.json()["accepted_by"] == ["V000002"]
    assert await event_count(app) == before  # accepting twice changes nothing

    completed = await client.post(f"/orders/{order_id}/complete", json={"people_served": 1})
    assert completed.status_code == 200 and completed.json()["status"] == "completed"
    rated = await client.post(f"/orders/{order_id}/rate", json={"rating": 5, "comment": COMMENT})
    assert rated.status_code == 200 and rated.json()["rating"] == 5

    order = (await client.get(f"/orders/{order_id}")).json()
    assert (order["status"], order["people_served"], order["comment"]) == ("rated", 1, COMMENT)
    assert order["completed_at"] is not None and order["accepted_at"] is not None
    assert [h["type"] for h in order["history"]] == [
        "OrderPlaced", "OrderDispatched", "OrderDeclined", "OrderDispatched", "OrderAccepted", "OrderCompleted", "OrderRated",
    ]
    assert order["history"][0]["actor"] == "staff-7" and order["history"][-1]["actor"] == "anonymous"
    listed = (await client.get("/orders", params={"status": "rated"})).json()["items"]
    assert [o["order_id"] for o in listed] == [order_id] and listed[0]["attempts"] == 2
    assert (await client.get("/orders/O99999999")).status_code == 404


async def test_a_cancelled_order_cannot_be_accepted_and_refusals_write_nothing(dispatch) -> None:
    client, app = dispatch
    order_id = await place(client)
    await send(client, order_id, ["V000001"])
    cancelled = await client.post(f"/orders/{order_id}/cancel", json={"reason": "withdrawn_by_resident"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    refused = await client.post(f"/orders/{order_id}/accept", json={"by": "V000001"})
    assert refused.status_code == 409 and refused.json()["state"] == "cancelled", refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    stranger = await place(client)
    await send(client, stranger, ["V000001"])
    before = await event_count(app)
    not_sent = await client.post(f"/orders/{stranger}/accept", json={"by": "V000009"})
    assert not_sent.status_code == 409 and not_sent.json()["state"] == "dispatched"
    rated_early = await client.post(f"/orders/{stranger}/rate", json={"rating": 4})
    assert rated_early.status_code == 409
    assert await event_count(app) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"window_end": (utcnow() + timedelta(hours=1)).isoformat(), "window_start": (utcnow() + timedelta(hours=3)).isoformat()}, "window_end"),
        ({"headcount": 0}, "headcount"),
        ({"required_skills": ["juggling"]}, "required_skills"),
        ({"community_code": "370303"}, "community_code"),
        ({"group_served": "pets"}, "group_served"),
        ({"window_start": "2030-01-01T09:00:00"}, "window_start"),
    ],
)
async def test_bad_order_fields_are_422_naming_the_field_and_leave_no_event(dispatch, changes: dict, field: str) -> None:
    client, app = dispatch
    response = await client.post("/orders", json=new_order(**changes))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field_of(response) == field and response.json()["errors"][0]["reason"]
    assert await event_count(app) == 0
    assert await place(client) == "O00000001"  # the refused order took no number


async def test_the_time_out_job_records_a_time_out_for_a_dispatch_past_its_deadline_once(dispatch) -> None:
    client, app = dispatch
    events = app.state.runtime.store
    late, answered = await place(client), await place(client)
    deadline = utcnow() + timedelta(minutes=5)
    await send(client, late, ["V000001"], deadline)
    await send(client, answered, ["V000002"], deadline)
    await client.post(f"/orders/{answered}/accept", json={"by": "V000002"})

    assert await handlers.time_out_due(events, utcnow()) == []  # not yet due
    later = deadline + timedelta(seconds=1)
    overdue = (await client.get("/orders", params={"overdue": "true"})).json()["items"]
    assert overdue == []  # the deadline has not passed on the server's clock
    assert await handlers.time_out_due(events, later) == [late]
    order = (await client.get(f"/orders/{late}")).json()
    assert order["status"] == "placed" and order["history"][-1] == {**order["history"][-1], "type": "OrderTimedOut", "actor": "system:dispatch"}
    before = await event_count(app)
    assert await handlers.time_out_due(events, later) == []
    assert await event_count(app) == before
    # It waits to be dispatched again.
    assert (await send(client, late, ["V000003"])).json()["attempts"] == 2


async def test_order_events_reach_the_dispatch_stream_without_the_free_text(dispatch, js) -> None:
    client, app = dispatch
    order_id = await place(client)
    await send(client, order_id, ["V000001"])
    await client.post(f"/orders/{order_id}/accept", json={"by": "V000001"})
    await client.post(f"/orders/{order_id}/complete", json={"people_served": 2})
    await client.post(f"/orders/{order_id}/rate", json={"rating": 4, "comment": COMMENT})

    await eventually(lambda: app.state.runtime.store.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("DISPATCH")
    messages = [await js.get_msg("DISPATCH", seq) for seq in range(1, info.state.last_seq + 1)]
    subjects = [m.subject for m in messages]
    assert subjects == [
        f"dispatch.370303.order.{step}" for step in ("placed", "dispatched", "accepted", "completed", "rated")
    ]
    placed = json.loads(messages[0].data)
    assert placed["payload"]["order_id"] == order_id and placed["org_path"] == ["370303", "370303001000", COMMUNITY]
    bodies = [m.data.decode() for m in messages] + await all_event_bodies(app)
    for body in bodies:
        text = json.dumps(json.loads(body), ensure_ascii=False)
        for secret in (DESCRIPTION, ADDRESS, COMMENT):
            assert secret not in text
        assert "description" not in json.loads(body)["payload"] and "address" not in json.loads(body)["payload"]


async def know(app: Any, number: str, community: str, skills: tuple[str, ...], status: str, certs: dict[str, date | None]) -> None:
    """Stands in for registry's VolunteerRegistered, VolunteerVerified and CertificationGranted,
    which the reactor turns into these same rows (tests/e2e follows the real path)."""
    path = ("370303", community[:9] + "000", community)
    async with app.state.runtime.store.transaction() as tx:
        await store.save_volunteer(tx.conn, KnownVolunteer(number, community, path, "35_59", skills))
        await store.change_volunteer(tx.conn, number, status=status)
        for name, expires_on in certs.items():
            await store.certify(tx.conn, number, name, expires_on)


async def test_suggestions_rank_by_skills_then_nearness_and_explain_every_exclusion(dispatch) -> None:
    client, app = dispatch
    never = {"first_aid": None}
    await know(app, "V000001", COMMUNITY, ("first_aid", "elder_care"), "verified", never)
    await know(app, "V000002", "370303001002", ("first_aid", "elder_care"), "verified", never)
    await know(app, "V000003", COMMUNITY, ("first_aid",), "verified", never)
    await know(app, "V000004", COMMUNITY, ("first_aid", "elder_care"), "pending", never)
    await know(app, "V000005", COMMUNITY, ("first_aid", "elder_care"), "verified", {})
    await know(app, "V000006", COMMUNITY, ("first_aid", "elder_care"), "verified", {"first_aid": date(2020, 1, 1)})
    order_id = await place(client, required_skills=["elder_care", "first_aid"], required_certifications=["first_aid"])

    response = await client.get(f"/orders/{order_id}/suggestions")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(s["rank"], s["volunteer_number"]) for s in body["suggestions"]] == [(1, "V000001"), (2, "V000002"), (3, "V000003")]
    assert body["suggestions"][0]["reasons"] == [
        "has elder_care, first_aid", "certified first_aid", "same community", "no shifts in the last 30 days",
    ]
    assert "same street" in body["suggestions"][1]["reasons"]
    assert "lacks elder_care" in body["suggestions"][2]["reasons"]
    assert {e["volunteer_number"]: e["reasons"] for e in body["excluded"]} == {
        "V000004": ["not verified (pending)"],
        "V000005": ["no first_aid certification"],
        "V000006": ["first_aid certification expires on 2020-01-01"],
    }
    assert (await client.get("/orders/O99999999/suggestions")).status_code == 404
