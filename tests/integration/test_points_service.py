"""The points service over a real NATS, with its real subscribers and store (SQLite and
PostgreSQL): registry's and dispatch's events are published into their streams as those services
would, and points is driven and read through its HTTP API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from services.points.app import create_app
from shared.auth import Role
from shared.bus import StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.envelope import EventEnvelope
from shared.events.registry import SiteOpened
from shared.settings import ServiceSettings
from tests.factories import PATH, registered
from tests.infra.auth import ADMIN, bearer, staff, volunteer
from tests.infra.points import DispatchRecords
from tests.infra.postgres import database
from tests.infra.waiting import eventually

STAFF = staff()
SITE = "ST-HEPING"
NOW = datetime(2026, 11, 23, 2, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def points(request: pytest.FixtureRequest, nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Any]]:
    """Points running, registry's and dispatch's streams there (a client publishing into them)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for context in ("registry", "dispatch"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(database(request.param, "points", tmp_path, request))
        app = create_app(ServiceSettings(nats_url=nats_url, database_url=url))
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://points", headers=ADMIN))
        app.state.clock = Clock(NOW)
        await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200)
        yield client, app, js
    await nc.close()


async def publish(js: Any, envelope: EventEnvelope, msg_id: str | None = None) -> None:
    subject = catalog.subject_of(envelope)
    stream = subject.split(".")[0].upper()
    await js.publish(subject, envelope.to_json(), headers={"Nats-Msg-Id": msg_id or str(envelope.event_id)}, stream=stream)


async def register(js: Any, n: int) -> str:
    event = registered(n)
    await publish(js, catalog.envelope(event, aggregate_id=event.volunteer_number, aggregate_version=1, org_path=PATH, actor="staff"))
    return event.volunteer_number


async def open_site(js: Any) -> None:
    event = SiteOpened(site_id=SITE, org_unit_code=PATH[-1], level="station", kind="community", name="和平站", opened_on=date(2025, 1, 1))
    await publish(js, catalog.envelope(event, aggregate_id=SITE, aggregate_version=1, org_path=PATH, actor="staff"))


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_confirmed_hours_from_dispatchs_stream_become_points_once_even_when_delivered_twice(points) -> None:
    client, _app, js = points
    number = await register(js, 1)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.status_code == 200)

    dispatch = DispatchRecords()
    envelope, confirmed = dispatch.confirm(number, Decimal(3), NOW)
    await publish(js, envelope)
    await publish(js, envelope, msg_id="a-second-copy")  # past the duplicate window, say
    account = await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["balance"] == 30)
    assert account.json()["hours"] == "3.00" and account.json()["time_credit_minutes"] == 180
    adjusted, _ = dispatch.adjust(confirmed.record_id, Decimal(2), NOW)
    await publish(js, adjusted)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["balance"] == 20)

    statement = await ok(await client.get(f"/accounts/{number}/statement"))
    assert [(e["event"], e["change"], e["balance"]) for e in statement["entries"]] == [
        ("ServiceCredited", 30, 30),
        ("ServiceDebited", -10, 20),
    ]
    assert statement["entries"][0]["counter_account"] == "issuance:370303"
    assert (await ok(await client.get("/ledger/trial-balance")))["balanced"] is True


async def test_hours_for_a_volunteer_points_has_not_heard_of_wait_for_the_account(points) -> None:
    client, _app, js = points
    dispatch = DispatchRecords()
    envelope, _ = dispatch.confirm("V00000002", Decimal(1), NOW)
    await publish(js, envelope)
    waiting = await eventually(lambda: client.get("/ledger/waiting"), lambda r: r.json()["waiting"])
    assert [(w["volunteer_number"], w["reason"]) for w in waiting.json()["waiting"]] == [("V00000002", "no points account yet")]

    await register(js, 2)
    await eventually(lambda: client.get("/accounts/V00000002"), lambda r: r.status_code == 200 and r.json()["balance"] == 10)
    assert (await ok(await client.get("/ledger/waiting")))["waiting"] == []


async def test_a_malformed_service_event_is_dead_lettered_and_the_ledger_goes_on(points) -> None:
    client, app, js = points
    number = await register(js, 3)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.status_code == 200)
    await js.publish("dispatch.370303.service_record.hours_confirmed", b'{"type": "ServiceHoursConfirmed"}', stream="DISPATCH")
    envelope, _ = DispatchRecords().confirm(number, Decimal(1), NOW)
    await publish(js, envelope)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["balance"] == 10)
    letter = await eventually(lambda: js.stream_info("DEADLETTER"), lambda info: info.state.messages >= 1)
    assert letter.state.messages == 1
    message = await js.get_msg("DEADLETTER", 1)
    # By the ledger's one follower (SQLite), or by one of its partitions (PostgreSQL): once.
    ledger = app.state.ledgers[0].name
    assert message.subject == f"deadletter.{ledger}.dispatch.370303.service_record.hours_confirmed"


async def test_the_shop_reserves_stock_and_points_together_and_refuses_with_409_changing_nothing(points) -> None:
    client, _app, js = points
    await open_site(js)
    number = await register(js, 4)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.status_code == 200)
    await publish(js, DispatchRecords().confirm(number, Decimal(5), NOW)[0])  # 50 points
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["balance"] == 50)

    item = await eventually(
        lambda: client.post(f"/sites/{SITE}/items", json={"name": "大米 5kg", "price_points": 20, "stock": 2}, headers=STAFF),
        lambda r: r.status_code == 201,  # once points has heard the site opened
    )
    item_id = item.json()["item_id"]
    too_many = await client.post("/redemptions", json={"volunteer_number": number, "item_id": item_id, "quantity": 3})
    assert too_many.status_code == 409 and too_many.json()["stock"] == 2
    first = await ok(await client.post("/redemptions", json={"volunteer_number": number, "item_id": item_id, "quantity": 2}))
    assert (first["points"], first["state"]) == (40, "reserved")
    poor = await client.post("/redemptions", json={"volunteer_number": number, "item_id": item_id})
    assert poor.status_code == 409  # out of stock now
    assert (await ok(await client.get(f"/accounts/{number}")))["balance"] == 10

    cancelled = await ok(await client.post(f"/redemptions/{first['redemption_id']}/cancel", json={"reason": "changed_mind"}))
    assert cancelled["state"] == "cancelled"
    assert (await ok(await client.get(f"/accounts/{number}")))["balance"] == 50
    assert (await ok(await client.get(f"/sites/{SITE}/items")))["items"][0]["stock"] == 2
    again = await client.post(f"/redemptions/{first['redemption_id']}/hand-over")
    assert again.status_code == 409 and again.json()["state"] == "cancelled"

    second = await ok(await client.post("/redemptions", json={"volunteer_number": number, "item_id": item_id}))
    handed = await ok(await client.post(f"/redemptions/{second['redemption_id']}/hand-over"))
    assert handed["state"] == "handed_over"
    dear = await ok(await client.post(f"/sites/{SITE}/items", json={"name": "电影票", "price_points": 100, "stock": 5}, headers=STAFF))
    not_enough = await client.post("/redemptions", json={"volunteer_number": number, "item_id": dear["item_id"]})
    assert not_enough.status_code == 409 and (not_enough.json()["balance"], not_enough.json()["needed"]) == (30, 100)
    unknown = await client.post("/redemptions", json={"volunteer_number": number, "item_id": "I09999999"})
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "item_id"
    figures = await ok(await client.get("/districts/370303/points"))
    assert (figures["issued"], figures["redeemed"], figures["held_for_redemptions"], figures["outstanding"]) == (50, 20, 0, 30)
    listed = await ok(await client.get(f"/sites/{SITE}/redemptions", params={"state": "handed_over"}))
    assert [r["redemption_id"] for r in listed["redemptions"]] == [second["redemption_id"]]


async def test_rules_stars_and_the_partner_check(points) -> None:
    client, app, js = points
    number = await register(js, 5)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.status_code == 200)
    rule = {"effective_from": "2026-11-23", "points_per_hour": "12", "daily_cap": 50, "campaigns": [
        {"name": "winter-care", "multiplier": "2", "starts_on": "2026-11-23", "ends_on": "2026-11-30", "field": "smart_help_for_elderly"}
    ]}
    made = await ok(await client.post("/districts/370303/points-rules", json=rule, headers=STAFF))
    assert made["version"] == 1
    past = await client.post("/districts/370303/points-rules", json=rule | {"effective_from": "2026-01-01"}, headers=STAFF)
    assert past.status_code == 422 and past.json()["errors"][0]["field"] == "effective_from"
    bad = await client.post("/districts/370303/points-rules", json=rule | {"points_per_hour": "-1"}, headers=STAFF)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "points_per_hour"

    await publish(js, DispatchRecords().confirm(number, Decimal(3), NOW)[0])  # 3 × 12 × 2 = 72, capped at 50
    account = await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["balance"] > 0)
    assert account.json()["balance"] == 50

    assert (await ok(await client.get(f"/volunteers/{number}/stars/at-least/1"))) == {"answer": False}
    uneven = await client.put("/star-thresholds", json={"hours": ["3", "2", "10", "20", "30"]}, headers=STAFF)
    assert uneven.status_code == 422 and uneven.json()["errors"][0]["field"] == "hours"
    await ok(await client.put("/star-thresholds", json={"hours": ["2", "3", "10", "20", "30"]}, headers=STAFF))
    assert (await ok(await client.get(f"/volunteers/{number}/stars/at-least/2"))) == {"answer": True}
    assert (await ok(await client.get(f"/volunteers/{number}/stars/at-least/3"))) == {"answer": False}
    assert (await client.get("/volunteers/V09999999/stars/at-least/1")).status_code == 404


async def test_time_credits_go_to_family_within_the_yearly_limit(points) -> None:
    client, _app, js = points
    giver, member = await register(js, 6), await register(js, 7)
    await eventually(lambda: client.get(f"/accounts/{member}"), lambda r: r.status_code == 200)
    await publish(js, DispatchRecords().confirm(giver, Decimal(10), NOW)[0])
    await eventually(lambda: client.get(f"/time-bank/{giver}"), lambda r: r.json()["minutes"] == 600)

    unlinked = await client.post(f"/time-bank/{giver}/gifts", json={"member_number": member, "minutes": 60})
    assert unlinked.status_code == 409
    await ok(await client.post(f"/time-bank/{giver}/family", json={"member_number": member, "relation": "parent"}))
    await ok(await client.put("/time-bank/limits", json={"minutes_per_year": 90}, headers=STAFF))
    await ok(await client.post(f"/time-bank/{giver}/gifts", json={"member_number": member, "minutes": 60}))
    over = await client.post(f"/time-bank/{giver}/gifts", json={"member_number": member, "minutes": 31})
    assert over.status_code == 409 and (over.json()["given_this_year"], over.json()["limit"]) == (60, 90)
    assert (await ok(await client.get(f"/time-bank/{member}")))["minutes"] == 60
    bank = await ok(await client.get(f"/time-bank/{giver}"))
    assert (bank["minutes"], bank["given_this_year"], bank["family"]) == (540, 60, [{"member_number": member, "relation": "parent"}])
    reservation = await ok(
        await client.post(f"/time-bank/{giver}/reservations", json={"minutes": 120, "beneficiary_number": member})
    )
    assert (reservation["state"], reservation["beneficiary_number"]) == ("held", member)
    assert (await ok(await client.get(f"/time-bank/{giver}")))["minutes"] == 420
    withdrawn = await ok(await client.post(f"/time-bank/reservations/{reservation['reservation_id']}/withdraw"))
    assert withdrawn["state"] == "released"
    assert (await ok(await client.get(f"/time-bank/{giver}")))["minutes"] == 540
    stranger = await client.post(f"/time-bank/{giver}/reservations", json={"minutes": 10, "beneficiary_number": "V00000099"})
    assert stranger.status_code == 409
    assert (await ok(await client.get("/ledger/trial-balance")))["balanced"] is True


async def test_staff_redeem_for_volunteers_they_reach_at_shops_they_reach_and_a_volunteer_at_any_shop(points) -> None:
    client, _app, js = points
    await open_site(js)
    elsewhere = ("370303", "370303001000", "370303001002")  # another community of the street
    other_site = SiteOpened(site_id="ST-DONGFENG", org_unit_code=elsewhere[-1], level="station", kind="community", name="东风站", opened_on=date(2025, 1, 1))
    await publish(js, catalog.envelope(other_site, aggregate_id="ST-DONGFENG", aggregate_version=1, org_path=elsewhere, actor="staff"))
    number = await register(js, 6)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.status_code == 200)
    await publish(js, DispatchRecords().confirm(number, Decimal(5), NOW)[0])  # 50 points
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["balance"] == 50)
    here, there = [
        (await eventually(lambda s=site: client.post(f"/sites/{s}/items", json={"name": "米", "price_points": 5, "stock": 9}, headers=STAFF), lambda r: r.status_code == 201)).json()["item_id"]
        for site in (SITE, "ST-DONGFENG")
    ]  # fmt: skip
    station, station_elsewhere = bearer(Role.station_staff, PATH[-1]), bearer(Role.station_staff, elsewhere[-1])

    async def redeem(item_id: str, headers: dict[str, str]) -> httpx.Response:
        return await client.post("/redemptions", json={"volunteer_number": number, "item_id": item_id}, headers=headers)

    assert (await redeem(here, station)).status_code == 201
    refused = [await redeem(there, station), await redeem(there, station_elsewhere), await redeem(here, volunteer("V00000099"))]
    assert [(r.status_code, r.json()["errors"][0]["field"]) for r in refused] == [
        (404, "item_id"), (404, "volunteer_number"), (404, "volunteer_number"),
    ]  # fmt: skip
    assert [(await redeem(item, volunteer(number))).status_code for item in (here, there)] == [201, 201]
    assert (await ok(await client.get(f"/accounts/{number}")))["balance"] == 35
    assert (await client.get(f"/sites/{SITE}/redemptions", headers=station_elsewhere)).status_code == 404
