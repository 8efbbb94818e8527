"""Dispatch's service records through its HTTP API, over a real store (SQLite and PostgreSQL) and
NATS: records drawn up at a check-out (in the caller's transaction) and entered by an
administrator, the organiser's confirmation, adjustment, revocation and decline, the volunteer's
correction requests and their outcome, district rounding rules by effective time, what is
published on the district's subject (never the content or an explanation), nothing deleted, and
the counted-hours arithmetic."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch import store
from services.dispatch.app import create_app
from services.dispatch.domain import KnownVolunteer
from services.dispatch.handlers import records as handlers
from shared.auth import Role
from shared.settings import ServiceSettings
from shared.web import Actor
from tests.infra.auth import ADMIN, bearer, staff, volunteer
from tests.infra.waiting import eventually

ORGANISER = staff()
CENTRE_ADMIN = staff("admin-2")
ANN, BOB = "V00000001", "V00000002"
VOLUNTEER = volunteer(ANN)
DISTRICT, STREET, COMMUNITY = "370303", "370303001000", "370303001001"
PATH = (DISTRICT, STREET, COMMUNITY)
SITE, ACTIVITY = "ST-DENGHUI", "A00000001"
TITLE = "元宵灯会交通引导"
CONTENT = "在东门路口引导游客，协助走失儿童王小明找到家长"
EXPLANATION = "我21点才走，扫码时手机没电了，李站长可以作证"
# Lantern festival night: 20:00–22:00 in the city is 12:00–14:00 UTC.
NIGHT = datetime(2026, 2, 12, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def dispatch_app(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=database_url))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://dispatch", headers=ADMIN) as client:
        app.state.clock = Clock(NIGHT + timedelta(days=4))
        yield client, app


@pytest.fixture
async def dispatch(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with dispatch_app(nats_url, database_url) as running:
        await lantern_festival(running[1])
        yield running


async def lantern_festival(app: Any, nights: int = 3) -> None:
    """Stands in for the activity and its shifts (the activities API writes these same rows), and
    for registry's volunteers (dispatch's reactor writes these rows)."""
    async with app.state.runtime.store.transaction() as tx:
        await tx.conn.execute(
            store.activities.insert().values(
                activity_id=ACTIVITY, site_id=SITE, org_path="/".join(PATH), kind="festival", theme="lantern_festival",
                field="civilised_traffic", group_served="public_needs", starts_on=date(2026, 2, 12),
                ends_on=date(2026, 2, 12 + nights - 1), status="scheduled", title=TITLE, description="", posts=[],
            )
        )
        for night in range(nights):
            start = NIGHT + timedelta(days=night)
            await tx.conn.execute(
                store.shifts.insert().values(
                    shift_id=f"SH{night + 1:08d}", activity_id=ACTIVITY, site_id=SITE, org_path="/".join(PATH),
                    starts_at=start, ends_at=start + timedelta(hours=2), capacity=40, status="open",
                )
            )
        for number in (ANN, BOB):
            await store.save_volunteer(tx.conn, KnownVolunteer(number, COMMUNITY, PATH, "35_59", ()))


async def check_out(
    app: Any, *, night: int = 0, volunteer: str = ANN, late_by: int = 0, minutes: int = 120, flag: str | None = None
) -> str:
    """What attendance does at a check-out: draw up the record inside its own transaction."""
    start = NIGHT + timedelta(days=night, minutes=late_by)
    async with app.state.runtime.store.transaction() as tx:
        return await handlers.draw_up_from_attendance(
            tx,
            Actor("system:dispatch"),
            shift_id=f"SH{night + 1:08d}",
            volunteer_number=volunteer,
            checked_in_at=start,
            checked_out_at=start + timedelta(minutes=minutes),
            minutes=minutes,
            flag=flag,
        )


def entry(**changes: Any) -> dict[str, Any]:
    return {
        "volunteer_number": BOB,
        "activity_id": ACTIVITY,
        "started_at": (NIGHT + timedelta(days=1)).isoformat(),
        "ended_at": (NIGHT + timedelta(days=1, hours=1, minutes=30)).isoformat(),
        "content": CONTENT,
        **changes,
    }


async def stored_envelopes(app: Any) -> list[dict[str, Any]]:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        rows = await conn.execute(select(events.schema.events.c.envelope).order_by(events.schema.events.c.position))
        return [json.loads(row.envelope) for row in rows]


async def event_count(app: Any) -> int:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


def counted_change(envelope: dict[str, Any]) -> Decimal:
    """What a consumer such as points does with each event: add, reverse and restate, subtract."""
    payload = envelope["payload"]
    match envelope["type"]:
        case "ServiceHoursConfirmed":
            return Decimal(payload["hours"])
        case "ServiceHoursAdjusted":
            return Decimal(payload["hours"]) - Decimal(payload["previous_hours"])
        case "ServiceHoursRevoked":
            return -Decimal(payload["hours"])
    return Decimal(0)


def counted_from(envelopes: list[dict[str, Any]], record_id: str) -> Decimal:
    return sum((counted_change(e) for e in envelopes if e["aggregate_id"] == record_id), Decimal(0))


def field_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


async def test_a_record_from_a_check_out_is_confirmed_adjusted_and_revoked_and_keeps_every_step(dispatch) -> None:
    client, app = dispatch
    record_id = await check_out(app, minutes=100, flag="no_check_out")
    assert record_id == "R00000001"
    assert await check_out(app, minutes=100) == record_id  # the same attendance: the same record, nothing new
    assert await event_count(app) == 1

    drawn = (await client.get(f"/service-records/{record_id}")).json()
    assert (drawn["status"], drawn["minutes"], drawn["hours"], drawn["counted_hours"]) == ("recorded", 100, "1.5", "0")
    assert (drawn["source"], drawn["shift_id"], drawn["flag"], drawn["content"]) == ("attendance", "SH00000001", "no_check_out", TITLE)
    assert (drawn["service_date"], drawn["org_path"], drawn["field"]) == ("2026-02-12", list(PATH), "civilised_traffic")

    confirmed = await client.post(f"/service-records/{record_id}/confirm", json={"minutes": 90, "reason": "left_early"}, headers=ORGANISER)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["counted_hours"], confirmed.json()["recorded_minutes"]) == ("confirmed", "1.5", 100)
    again = await client.post(f"/service-records/{record_id}/confirm", json={}, headers=ORGANISER)
    assert again.status_code == 200 and await event_count(app) == 2  # confirming again changes nothing

    adjusted = await client.post(f"/service-records/{record_id}/adjust", json={"minutes": 135, "reason": "came_back"}, headers=ORGANISER)
    assert adjusted.status_code == 200 and adjusted.json()["counted_hours"] == "2.5"
    same = await client.post(f"/service-records/{record_id}/adjust", json={"minutes": 135, "reason": "came_back"}, headers=ORGANISER)
    assert same.status_code == 200 and await event_count(app) == 3
    envelopes = await stored_envelopes(app)
    assert counted_from(envelopes, record_id) == Decimal("2.5")

    revoked = await client.post(f"/service-records/{record_id}/revoke", json={"reason": "not_served"}, headers=CENTRE_ADMIN)
    assert revoked.status_code == 200 and (revoked.json()["status"], revoked.json()["counted_hours"]) == ("revoked", "0")

    record = (await client.get(f"/service-records/{record_id}")).json()
    assert [(h["type"], h["actor"]) for h in record["history"]] == [
        ("ServiceRecorded", "system:dispatch"),
        ("ServiceHoursConfirmed", "staff-7"),
        ("ServiceHoursAdjusted", "staff-7"),
        ("ServiceHoursRevoked", "admin-2"),
    ]
    confirmation = record["history"][1]["payload"]
    assert (confirmation["minutes"], confirmation["adjusted_from_minutes"], confirmation["reason"]) == (90, 100, "left_early")
    adjustment = record["history"][2]["payload"]
    assert (adjustment["previous_hours"], adjustment["hours"]) == ("1.5", "2.5")
    assert counted_from(await stored_envelopes(app), record_id) == Decimal(0)
    assert (await client.get("/service-records/R99999999")).status_code == 404


async def test_a_command_that_clashes_with_the_records_state_is_409_naming_it_and_writes_nothing(dispatch) -> None:
    client, app = dispatch
    record_id = await check_out(app)
    await client.post(f"/service-records/{record_id}/confirm", json={}, headers=ORGANISER)
    before = await event_count(app)
    declined = await client.post(f"/service-records/{record_id}/decline", json={"reason": "not_served"}, headers=ORGANISER)
    assert declined.status_code == 409 and declined.json()["state"] == "confirmed", declined.text
    assert declined.headers["content-type"] == "application/problem+json"
    other = await client.post(f"/service-records/{record_id}/confirm", json={"minutes": 60, "reason": "left_early"}, headers=ORGANISER)
    assert other.status_code == 409 and other.json()["state"] == "confirmed"
    assert await event_count(app) == before

    waiting = await check_out(app, night=1)
    declined = await client.post(f"/service-records/{waiting}/decline", json={"reason": "not_served"}, headers=ORGANISER)
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    for path, body in (("confirm", {}), ("adjust", {"minutes": 60, "reason": "x"}), ("revoke", {"reason": "x"})):
        refused = await client.post(f"/service-records/{waiting}/{path}", json=body, headers=ORGANISER)
        assert refused.status_code == 409 and refused.json()["state"] == "declined", (path, refused.text)
    asked = await client.post(f"/service-records/{waiting}/correction-requests", json={"reason": "wrong_minutes"}, headers=VOLUNTEER)
    assert asked.status_code == 409 and asked.json()["state"] == "declined"


@pytest.mark.parametrize(
    ("path", "body", "headers", "field"),
    [
        ("adjust", {"minutes": -1, "reason": "left_early"}, ORGANISER, "minutes"),
        ("adjust", {"minutes": 60}, ORGANISER, "reason"),
        ("confirm", {"minutes": 60}, ORGANISER, "reason"),  # other minutes than recorded, no reason
        ("confirm", {"minutes": 60, "reason": "Left early!"}, ORGANISER, "reason"),
        ("confirm", {"hours": 1}, ORGANISER, "hours"),  # no such field
        ("decline", {}, ORGANISER, "reason"),
        ("correction-requests", {"reason": "wrong_minutes", "requested_minutes": 5000}, VOLUNTEER, "minutes"),
        ("correction-requests/decide", {"outcome": "maybe", "reason": "x"}, ORGANISER, "outcome"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(dispatch, path, body, headers, field) -> None:
    client, app = dispatch
    record_id = await check_out(app)
    before = await event_count(app)
    response = await client.post(f"/service-records/{record_id}/{path}", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field_of(response) == field and response.json()["errors"][0]["reason"]
    assert await event_count(app) == before


async def test_another_volunteers_record_is_answered_as_unknown_whatever_is_sent(dispatch) -> None:
    client, app = dispatch
    record_id = await check_out(app)
    before = await event_count(app)
    for body in ({"reason": "wrong_minutes"}, {}):
        asked = await client.post(
            f"/service-records/{record_id}/correction-requests", json=body, headers=volunteer(BOB)
        )
        assert asked.status_code == 404 and asked.json()["detail"] == f"unknown service record {record_id}", asked.text
    assert (await client.get(f"/service-records/{record_id}", headers=volunteer(BOB))).status_code == 404
    assert (await client.get(f"/service-records/{record_id}", headers=VOLUNTEER)).status_code == 200
    assert await event_count(app) == before


async def test_an_entry_for_an_activity_unknown_or_out_of_reach_is_404_naming_it_and_takes_no_number(dispatch) -> None:
    client, app = dispatch
    elsewhere = bearer(Role.district_admin, "370302")
    unknown = await client.post("/service-records", json=entry(activity_id="A99999999"), headers=CENTRE_ADMIN)
    outside = await client.post("/service-records", json=entry(), headers=elsewhere)
    for refused, activity_id in ((unknown, "A99999999"), (outside, ACTIVITY)):
        assert refused.status_code == 404 and field_of(refused) == "activity_id", refused.text
        assert refused.json()["detail"] == f"dispatch knows no activity {activity_id}"
    assert await event_count(app) == 0
    made = await client.post("/service-records", json=entry(), headers=bearer(Role.district_admin, DISTRICT))
    assert made.json()["record_id"] == "R00000001", made.text


async def test_an_administrators_entry_is_marked_and_the_same_entry_again_gives_its_record_back(dispatch) -> None:
    client, app = dispatch
    made = await client.post("/service-records", json=entry(), headers=CENTRE_ADMIN)
    assert made.status_code == 201 and made.json() == {"record_id": "R00000001", "created": True}, made.text
    again = await client.post("/service-records", json=entry(), headers=CENTRE_ADMIN)
    assert again.status_code == 200 and again.json() == {"record_id": "R00000001", "created": False}
    record = (await client.get("/service-records/R00000001")).json()
    assert (record["source"], record["shift_id"], record["minutes"], record["hours"], record["content"]) == (
        "admin_entry", None, 90, "1.5", CONTENT
    )
    assert record["history"][0]["actor"] == "admin-2" and record["history"][0]["payload"]["source"] == "admin_entry"

    # Bob also checked in that night: the entry over it would count the same hours twice.
    attended = await check_out(app, night=2, volunteer=BOB)
    overlapping = entry(started_at=(NIGHT + timedelta(days=2, minutes=30)).isoformat(), ended_at=(NIGHT + timedelta(days=2, hours=3)).isoformat())
    clash = await client.post("/service-records", json=overlapping, headers=CENTRE_ADMIN)
    assert clash.status_code == 409 and (clash.json()["state"], clash.json()["record_id"]) == ("overlapping", attended)
    # Once that record is declined, its time is free.
    await client.post(f"/service-records/{attended}/decline", json={"reason": "duplicate"}, headers=ORGANISER)
    freed = await client.post("/service-records", json=overlapping, headers=CENTRE_ADMIN)
    assert freed.status_code == 201 and freed.json()["record_id"] == "R00000003"  # no number was lost to the clash


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ended_at": NIGHT.isoformat()}, "ended_at"),  # ends before it starts
        ({"ended_at": (NIGHT + timedelta(days=5)).isoformat()}, "ended_at"),  # not over yet on the server's clock
        ({"minutes": 91}, "minutes"),
        ({"volunteer_number": "V00000099"}, "volunteer_number"),
        ({"started_at": (NIGHT - timedelta(days=1)).isoformat(), "ended_at": (NIGHT - timedelta(hours=23)).isoformat()}, "started_at"),
        ({"started_at": "2026-02-13T20:00:00"}, "started_at"),  # no zone
        ({"site_id": SITE}, "site_id"),  # no such field: the activity's site is the record's
    ],
)
async def test_a_bad_entry_is_422_naming_the_field_and_takes_no_number(dispatch, changes, field) -> None:
    client, app = dispatch
    response = await client.post("/service-records", json=entry(**changes), headers=CENTRE_ADMIN)
    assert response.status_code == 422, response.text
    assert field_of(response) == field
    assert await event_count(app) == 0
    assert (await client.post("/service-records", json=entry(), headers=CENTRE_ADMIN)).json()["record_id"] == "R00000001"


async def test_a_correction_request_and_its_outcome_are_kept_and_granting_it_confirms_the_minutes_asked(dispatch) -> None:
    client, app = dispatch
    record_id = await check_out(app, minutes=120, flag="no_check_out")
    body = {"requested_minutes": 60, "reason": "forgot_check_out", "explanation": EXPLANATION}
    asked = await client.post(f"/service-records/{record_id}/correction-requests", json=body, headers=VOLUNTEER)
    assert asked.status_code == 201 and asked.json()["correction_pending"] is True, asked.text
    repeat = await client.post(f"/service-records/{record_id}/correction-requests", json=body, headers=VOLUNTEER)
    assert repeat.status_code == 201 and await event_count(app) == 2
    other = await client.post(f"/service-records/{record_id}/correction-requests", json={"reason": "wrong_activity"}, headers=VOLUNTEER)
    assert other.status_code == 409 and other.json()["state"] == "correction_requested"
    first_confirm = await client.post(f"/service-records/{record_id}/confirm", json={}, headers=ORGANISER)
    assert first_confirm.status_code == 409 and first_confirm.json()["state"] == "correction_requested"

    granted = await client.post(
        f"/service-records/{record_id}/correction-requests/decide", json={"outcome": "granted", "reason": "witness_confirms"}, headers=ORGANISER
    )
    assert granted.status_code == 200, granted.text
    assert (granted.json()["status"], granted.json()["minutes"], granted.json()["counted_hours"]) == ("confirmed", 60, "1")

    # The volunteer asks again; this time the organiser refuses.
    await client.post(f"/service-records/{record_id}/correction-requests", json={"requested_minutes": 90, "reason": "wrong_minutes"}, headers=VOLUNTEER)
    refused = await client.post(
        f"/service-records/{record_id}/correction-requests/decide", json={"outcome": "refused", "reason": "records_agree"}, headers=ORGANISER
    )
    assert refused.status_code == 200 and refused.json()["minutes"] == 60
    late = await client.post(
        f"/service-records/{record_id}/correction-requests/decide", json={"outcome": "granted", "reason": "x", "minutes": 90}, headers=ORGANISER
    )
    assert late.status_code == 409 and late.json()["state"] == "no_open_request"

    record = (await client.get(f"/service-records/{record_id}")).json()
    assert [(h["type"], h["actor"]) for h in record["history"]] == [
        ("ServiceRecorded", "system:dispatch"),
        ("CorrectionRequested", ANN),
        ("CorrectionDecided", "staff-7"),
        ("ServiceHoursConfirmed", "staff-7"),
        ("CorrectionRequested", ANN),
        ("CorrectionDecided", "staff-7"),
    ]
    assert record["history"][3]["payload"]["adjusted_from_minutes"] == 120
    requests = [
        (r["request_no"], r["requested_minutes"], r["reason"], r["explanation"], r["outcome"], r["decided_reason"], r["decided_by"])
        for r in record["correction_requests"]
    ]
    assert requests == [
        (1, 60, "forgot_check_out", EXPLANATION, "granted", "witness_confirms", "staff-7"),
        (2, 90, "wrong_minutes", "", "refused", "records_agree", "staff-7"),
    ]
    assert all(r["requested_at"] and r["decided_at"] for r in record["correction_requests"])


async def test_a_districts_rounding_rule_applies_to_service_starting_from_its_effective_time(dispatch) -> None:
    client, app = dispatch
    default = (await client.get(f"/districts/{DISTRICT}/rounding-rule")).json()
    assert default["in_force"]["default"] is True and default["changes"] == []
    assert default["in_force"]["bands"] == [
        {"below_minutes": 15, "hours": "0"}, {"below_minutes": 45, "hours": "0.5"}, {"below_minutes": 60, "hours": "1"}
    ]
    # From the second night on, every started half hour counts half an hour.
    second_night = NIGHT + timedelta(days=1)
    app.state.clock.now = NIGHT + timedelta(hours=3)
    halves = {"bands": [{"below_minutes": 1, "hours": 0}, {"below_minutes": 31, "hours": "0.5"}, {"below_minutes": 60, "hours": 1}],
              "effective_from": second_night.isoformat()}
    put = await client.put(f"/districts/{DISTRICT}/rounding-rule", json=halves, headers=CENTRE_ADMIN)
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1 and put.json()["in_force"]["default"] is True  # not yet in force
    again = await client.put(f"/districts/{DISTRICT}/rounding-rule", json=halves, headers=CENTRE_ADMIN)
    assert again.json()["version"] == 1  # setting it again changes nothing

    first = await check_out(app, night=0, minutes=61)
    second = await check_out(app, night=1, minutes=61)
    hours = [(await client.get(f"/service-records/{r}")).json()["hours"] for r in (first, second)]
    assert hours == ["1", "1.5"]  # 61 minutes: default rule on the first night, halves from the second

    # A correction of the first night's record still rounds by the rule it was drawn up by.
    await client.post(f"/service-records/{first}/confirm", json={}, headers=ORGANISER)
    adjusted = await client.post(f"/service-records/{first}/adjust", json={"minutes": 80, "reason": "came_back"}, headers=ORGANISER)
    assert adjusted.json()["hours"] == "1.5"  # 80 minutes by default: 1 h + 20 min → 0.5

    app.state.clock.now = second_night + timedelta(minutes=1)
    now_in_force = (await client.get(f"/districts/{DISTRICT}/rounding-rule")).json()["in_force"]
    assert now_in_force["default"] is False and now_in_force["effective_from"] == second_night.isoformat()

    past = await client.put(f"/districts/{DISTRICT}/rounding-rule", json={**halves, "effective_from": NIGHT.isoformat()}, headers=CENTRE_ADMIN)
    assert past.status_code == 422 and field_of(past) == "effective_from"
    bad = await client.put(f"/districts/{DISTRICT}/rounding-rule", json={"bands": [{"below_minutes": 30, "hours": 1}]}, headers=CENTRE_ADMIN)
    assert bad.status_code == 422 and field_of(bad) == "bands"
    not_a_district = await client.put(f"/districts/{COMMUNITY}/rounding-rule", json=halves, headers=CENTRE_ADMIN)
    assert not_a_district.status_code == 422


async def test_records_are_listed_by_id_a_page_at_a_time_with_filters(dispatch) -> None:
    client, app = dispatch
    for night in range(3):
        await check_out(app, night=night)
    await check_out(app, night=0, volunteer=BOB)
    await client.post("/service-records/R00000002/confirm", json={}, headers=ORGANISER)
    page = (await client.get("/service-records", params={"volunteer": ANN, "limit": 2})).json()
    assert [r["record_id"] for r in page["items"]] == ["R00000001", "R00000002"] and page["next"] == "R00000002"
    rest = (await client.get("/service-records", params={"volunteer": ANN, "limit": 2, "after": page["next"]})).json()
    assert [r["record_id"] for r in rest["items"]] == ["R00000003"] and rest["next"] is None
    confirmed = (await client.get("/service-records", params={"status": "confirmed", "site": SITE, "activity": ACTIVITY})).json()
    assert [(r["record_id"], r["counted_hours"]) for r in confirmed["items"]] == [("R00000002", "2")]


async def test_record_events_reach_the_districts_subject_without_content_or_explanation(dispatch, js) -> None:
    client, app = dispatch
    attended = await check_out(app, minutes=100)
    entered = (await client.post("/service-records", json=entry(), headers=CENTRE_ADMIN)).json()["record_id"]
    await client.post(
        f"/service-records/{attended}/correction-requests",
        json={"requested_minutes": 110, "reason": "wrong_minutes", "explanation": EXPLANATION},
        headers=VOLUNTEER,
    )
    await client.post(f"/service-records/{attended}/correction-requests/decide", json={"outcome": "granted", "reason": "ok"}, headers=ORGANISER)
    await client.post(f"/service-records/{attended}/adjust", json={"minutes": 44, "reason": "left_early"}, headers=ORGANISER)
    await client.post(f"/service-records/{entered}/confirm", json={}, headers=ORGANISER)
    await client.put(f"/districts/{DISTRICT}/rounding-rule", json={"bands": [{"below_minutes": 60, "hours": 1}]}, headers=CENTRE_ADMIN)

    await eventually(lambda: app.state.runtime.store.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("DISPATCH")
    messages = [await js.get_msg("DISPATCH", seq) for seq in range(1, info.state.last_seq + 1)]
    assert [m.subject for m in messages] == [
        f"dispatch.{DISTRICT}.{aggregate}.{action}"
        for aggregate, action in [
            ("service_record", "recorded"),
            ("service_record", "recorded"),
            ("service_record", "correction_requested"),
            ("service_record", "correction_decided"),
            ("service_record", "hours_confirmed"),
            ("service_record", "hours_adjusted"),
            ("service_record", "hours_confirmed"),
            ("rounding_rule", "set"),
        ]
    ]
    published = [json.loads(m.data) for m in messages]
    assert published[0]["org_path"] == list(PATH) and published[-1]["org_path"] == [DISTRICT]
    assert published[1]["payload"]["source"] == "admin_entry" and published[1]["actor"] == "admin-2"
    for body in [m.data.decode() for m in messages] + [json.dumps(e, ensure_ascii=False) for e in await stored_envelopes(app)]:
        text = json.dumps(json.loads(body), ensure_ascii=False)
        assert CONTENT not in text and EXPLANATION not in text and TITLE not in text
        assert not {"content", "explanation"} & set(json.loads(body)["payload"])

    # What a consumer adds up from the stream is what each record counts.
    for record_id in (attended, entered):
        counted = (await client.get(f"/service-records/{record_id}")).json()["counted_hours"]
        assert counted_from(published, record_id) == Decimal(counted)
    assert (counted_from(published, attended), counted_from(published, entered)) == (Decimal("0.5"), Decimal("1.5"))
