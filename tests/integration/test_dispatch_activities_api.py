"""Dispatch's activities, shifts, sign-ups and QR attendance through its HTTP API, over a real
store (SQLite and PostgreSQL) and NATS: recurring shifts, capacity and the waiting list,
cancellation with notice, check-in and check-out by the rotating code with every refusal the
code can earn, the geofence, the closing of shifts nobody checked out of, and what is published."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch.attendance import ShiftCodes
from services.dispatch.handlers import attendance as attendance_handlers
from tests.infra.auth import staff, volunteer
from tests.infra.dispatch import Clock, dispatch_app, know_site, know_volunteer
from tests.infra.waiting import eventually

STAFF = staff()
SITE = "ST-DENGHUI"
COMMUNITY = "370303001001"
PATH = ("370303", "370303001000", COMMUNITY)
TITLE = "元宵灯会交通引导"
DESCRIPTION = "东门路口，穿反光背心，联系人张阿姨13912345678"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Lantern festival: every night 20:00–22:00 (city time) from a fixed day well ahead.
FIRST_NIGHT = datetime(2027, 2, 11, 20, 0, tzinfo=SHANGHAI)
CENTRE = (36.8130, 118.0550)


@pytest.fixture
async def dispatch(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Clock]]:
    async with dispatch_app(nats_url, database_url, FIRST_NIGHT.astimezone(UTC) - timedelta(days=2)) as running:
        await know_site(running[1], SITE, PATH)
        for n in range(1, 7):
            await know_volunteer(running[1], f"V{n:08d}", PATH)
        yield running


def new_activity(**changes: object) -> dict[str, object]:
    return {
        "site_id": SITE,
        "kind": "festival",
        "theme": "lantern_festival",
        "field": "civilised_traffic",
        "group_served": "public_needs",
        "starts_on": "2027-02-11",
        "ends_on": "2027-03-12",
        "title": TITLE,
        "description": DESCRIPTION,
        "posts": [{"post_id": "east_gate", "title": "东门路口", "required_skills": []}],
        **changes,
    }


async def schedule(client: httpx.AsyncClient, **changes: object) -> str:
    response = await client.post("/activities", json=new_activity(**changes), headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()["activity_id"]


async def open_shifts(client: httpx.AsyncClient, activity_id: str, **changes: object) -> list[str]:
    body = {
        "starts_at": FIRST_NIGHT.isoformat(),
        "ends_at": (FIRST_NIGHT + timedelta(hours=2)).isoformat(),
        "capacity": 2,
        "post_id": "east_gate",
        **changes,
    }
    response = await client.post(f"/activities/{activity_id}/shifts", json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()["shift_ids"]


async def sign_up(client: httpx.AsyncClient, shift_id: str, number: str) -> httpx.Response:
    return await client.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": number}, headers=STAFF)


async def scan(client: httpx.AsyncClient, code: str, number: str, **extra: object) -> httpx.Response:
    return await client.post("/scans", json={"code": code, "volunteer_number": number, **extra}, headers=volunteer(number))


async def code_now(client: httpx.AsyncClient, shift_id: str) -> str:
    response = await client.get(f"/shifts/{shift_id}/code")
    assert response.status_code == 200, response.text
    return response.json()["code"]


async def event_types(app: Any) -> list[str]:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return list(
            (await conn.execute(select(events.schema.events.c.event_type).order_by(events.schema.events.c.position))).scalars()
        )


async def event_count(app: Any) -> int:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


async def records_of(client: httpx.AsyncClient, number: str) -> list[dict[str, Any]]:
    return (await client.get("/service-records", params={"volunteer": number})).json()["items"]


def problem(response: httpx.Response) -> tuple[int, str | None, str | None]:
    """Status, the offending field, and the machine-readable reason (422) or state (409)."""
    body = response.json()
    field = (body.get("errors") or [{}])[0].get("field")
    return response.status_code, field, body.get("reason") or body.get("state")


# --- Activities and recurring shifts --------------------------------------------------------------


async def test_a_festival_opens_thirty_nightly_shifts_at_the_same_city_time(dispatch) -> None:
    client, _, _ = dispatch
    activity_id = await schedule(client)
    shift_ids = await open_shifts(client, activity_id, count=30, capacity=40)
    assert len(shift_ids) == 30 and shift_ids[0] == "SH00000001"

    activity = (await client.get(f"/activities/{activity_id}")).json()
    assert (activity["title"], activity["org_path"], activity["posts"][0]["title"]) == (TITLE, list(PATH), "东门路口")
    starts = [datetime.fromisoformat(s["starts_at"]).astimezone(SHANGHAI) for s in activity["shifts"]]
    assert [s.date() for s in starts] == [date(2027, 2, 11) + timedelta(days=n) for n in range(30)]
    assert {(s.hour, s.minute) for s in starts} == {(20, 0)}
    assert {s["series_id"] for s in activity["shifts"]} == {shift_ids[0]}
    assert {s["capacity"] for s in activity["shifts"]} == {40}


async def test_shifts_outside_the_activity_or_for_an_unknown_post_are_refused_with_the_field(dispatch) -> None:
    client, _, _ = dispatch
    activity_id = await schedule(client)
    body = {"starts_at": FIRST_NIGHT.isoformat(), "ends_at": (FIRST_NIGHT + timedelta(hours=2)).isoformat(), "capacity": 2}
    too_many = await client.post(f"/activities/{activity_id}/shifts", json={**body, "count": 31}, headers=STAFF)
    assert problem(too_many)[:2] == (422, "starts_at")  # the 31st night is after the activity's last day
    no_post = await client.post(f"/activities/{activity_id}/shifts", json={**body, "post_id": "west_gate"}, headers=STAFF)
    assert problem(no_post)[:2] == (422, "post_id")
    backwards = await client.post(f"/activities/{activity_id}/shifts", json={**body, "ends_at": body["starts_at"]}, headers=STAFF)
    assert problem(backwards)[:2] == (422, "ends_at")
    # An unknown site is answered as one outside the caller's reach: 404, naming the field.
    unknown_site = await client.post("/activities", json=new_activity(site_id="ST-NOWHERE"), headers=STAFF)
    assert problem(unknown_site)[:2] == (404, "site_id")
    order_less = await client.post("/activities", json=new_activity(kind="from_order"), headers=STAFF)
    assert problem(order_less)[:2] == (422, "order_id")
    assert (await client.get("/activities/A99999999")).status_code == 404
    assert (await client.get("/shifts/SH99999999")).status_code == 404


# --- Sign-up, waiting list, cancellation ----------------------------------------------------------


async def test_sign_up_fills_the_capacity_then_the_waiting_list_and_a_withdrawal_promotes_the_first_waiting(dispatch) -> None:
    client, app, _ = dispatch
    (shift_id,) = await open_shifts(client, await schedule(client), capacity=2)
    positions = [(await sign_up(client, shift_id, f"V{n:08d}")).json()["position"] for n in (1, 2, 3, 4)]
    assert positions == ["confirmed", "confirmed", "waitlisted", "waitlisted"]

    before = await event_count(app)
    again = await sign_up(client, shift_id, "V00000003")
    assert again.status_code == 200 and again.json()["position"] == "waitlisted"
    assert await event_count(app) == before  # signing up twice changes nothing

    withdrawn = await client.delete(f"/shifts/{shift_id}/sign-ups/V00000001", headers=STAFF)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["confirmed"] == ["V00000002", "V00000003"] and withdrawn.json()["waitlisted"] == ["V00000004"]
    listed = (await client.get(f"/shifts/{shift_id}/sign-ups")).json()
    assert (listed["confirmed"], listed["waitlisted"]) == (["V00000002", "V00000003"], ["V00000004"])
    shift = (await client.get(f"/shifts/{shift_id}")).json()
    assert (shift["confirmed"], shift["waitlisted"], shift["title"]) == (2, 1, TITLE)
    notices = (await client.get("/volunteers/V00000003/notices")).json()["items"]
    assert [n["kind"] for n in notices] == ["promoted"] and shift_id in notices[0]["text"]
    assert (await event_types(app))[-2:] == ["SignUpWithdrawn", "WaitlistPromoted"]


async def test_only_a_known_verified_volunteer_signs_up(dispatch) -> None:
    client, app, _ = dispatch
    (shift_id,) = await open_shifts(client, await schedule(client))
    assert problem(await sign_up(client, shift_id, "V00000099"))[:2] == (422, "volunteer_number")
    await know_volunteer(app, "V00000050", PATH, status="suspended")
    refused = await sign_up(client, shift_id, "V00000050")
    assert refused.status_code == 409 and refused.json()["state"] == "suspended"
    assert problem(await sign_up(client, shift_id, "not-a-number"))[:2] == (422, "volunteer_number")


async def test_cancelling_an_activity_cancels_its_coming_shifts_and_tells_everyone_signed_up(dispatch, js) -> None:
    client, app, clock = dispatch
    activity_id = await schedule(client)
    first, second = await open_shifts(client, activity_id, count=2, capacity=1)
    for number in ("V00000001", "V00000002"):
        await sign_up(client, first, number)
    await sign_up(client, second, "V00000003")

    cancelled = await client.post(f"/activities/{activity_id}/cancel", json={"reason": "heavy_snow"}, headers=STAFF)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    for number, shift_id in (("V00000001", first), ("V00000002", first), ("V00000003", second)):
        notices = (await client.get(f"/volunteers/{number}/notices")).json()["items"]
        assert [(n["kind"], n["shift_id"]) for n in notices] == [("cancelled", shift_id)]
        assert "heavy_snow" in notices[0]["text"]
    assert {(await client.get(f"/shifts/{s}")).json()["status"] for s in (first, second)} == {"cancelled"}
    assert problem(await sign_up(client, first, "V00000004"))[::2] == (409, "cancelled")
    again = await client.post(f"/activities/{activity_id}/cancel", json={"reason": "heavy_snow"}, headers=STAFF)
    assert again.status_code == 200
    assert problem(await client.post(f"/activities/{activity_id}/complete", json={"people_served": 3}, headers=STAFF))[::2] == (409, "cancelled")

    await eventually(lambda: app.state.runtime.store.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("DISPATCH")
    messages = [await js.get_msg("DISPATCH", seq) for seq in range(1, info.state.last_seq + 1)]
    notified = [json.loads(m.data)["payload"]["notified"] for m in messages if m.subject == "dispatch.370303.shift.cancelled"]
    assert notified == [["V00000001", "V00000002"], ["V00000003"]]
    for message in messages:
        text = message.data.decode()
        assert TITLE not in json.loads(text)["payload"].values() and DESCRIPTION not in text and "东门" not in text


# --- Attendance by QR code ------------------------------------------------------------------------


async def night_with(client: httpx.AsyncClient, clock: Clock, *numbers: str, **shift: object) -> str:
    (shift_id,) = await open_shifts(client, await schedule(client), capacity=10, **shift)
    for number in numbers:
        assert (await sign_up(client, shift_id, number)).json()["position"] == "confirmed"
    clock.now = FIRST_NIGHT.astimezone(UTC) - timedelta(minutes=10)  # check-in opens 30 min before
    return shift_id


async def test_a_scan_checks_in_a_repeat_changes_nothing_and_a_later_scan_checks_out_capped_by_the_shift(dispatch) -> None:
    client, app, clock = dispatch
    shift_id = await night_with(client, clock, "V00000001")
    checked_in = await scan(client, await code_now(client, shift_id), "V00000001")
    assert checked_in.status_code == 200, checked_in.text
    assert checked_in.json()["result"] == "checked_in"
    assert datetime.fromisoformat(checked_in.json()["at"]) == clock.now  # the server's time, not the phone's

    before = await event_count(app)
    clock.move(seconds=20)
    repeat = await scan(client, await code_now(client, shift_id), "V00000001")
    assert repeat.json()["result"] == "unchanged" and await event_count(app) == before

    clock.now = (FIRST_NIGHT + timedelta(hours=2, minutes=15)).astimezone(UTC)  # after the end: too late to check out
    late = await scan(client, await code_now(client, shift_id), "V00000001")
    assert late.status_code == 200 and late.json()["result"] == "checked_out"
    assert late.json()["minutes"] == 120  # counted from the start to the end only
    after = await scan(client, await code_now(client, shift_id), "V00000001")
    assert after.json()["result"] == "unchanged" and after.json()["minutes"] == 120

    attendance = (await client.get(f"/shifts/{shift_id}/attendance")).json()["items"]
    assert [(a["volunteer_number"], a["minutes"], a["flag"]) for a in attendance] == [("V00000001", 120, None)]
    assert [t for t in await event_types(app) if t != "ServiceRecorded"][-2:] == ["VolunteerCheckedIn", "VolunteerCheckedOut"]
    # Dispatch's own subscriber draws up the service record once the check-out is published.
    recorded = await eventually(lambda: records_of(client, "V00000001"), lambda items: len(items) == 1)
    assert [(r["shift_id"], r["minutes"], r["flag"], r["status"]) for r in recorded] == [(shift_id, 120, None, "recorded")]


async def test_stale_forged_malformed_future_and_other_shift_codes_are_refused_with_the_reason(dispatch) -> None:
    client, app, clock = dispatch
    shift_id = await night_with(client, clock, "V00000001")
    (other_shift,) = await open_shifts(client, await schedule(client), capacity=3)
    codes: ShiftCodes = app.state.shift_codes
    good = await code_now(client, shift_id)
    shift_part, step, mac = good.split(".")
    forged_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    other = codes.code_for(other_shift, clock.now)
    cases = {
        "stale": codes.code_for(shift_id, clock.now - timedelta(minutes=2)),
        "future": codes.code_for(shift_id, clock.now + timedelta(minutes=2)),
        "forged": f"{shift_part}.{step}.{forged_mac}",
        "malformed": "https://example.com/not-a-code",
    }
    before = await event_count(app)
    for reason, code in cases.items():
        refused = await scan(client, code, "V00000001")
        assert refused.status_code == 422, (reason, refused.text)
        assert problem(refused) == (422, "code", reason)
    # A good code of another shift, scanned from this shift's page.
    wrong_page = await scan(client, other, "V00000001", shift_id=shift_id)
    assert problem(wrong_page) == (422, "code", "other_shift")
    # The other shift's code on its own: the volunteer has no place there.
    assert problem(await scan(client, other, "V00000001"))[::2] == (409, "not_signed_up")
    # Someone else's forged shift id inside a real-looking code.
    assert problem(await scan(client, f"SH00000999.{step}.{mac}", "V00000001"))[2] == "forged"
    assert await event_count(app) == before  # no refusal wrote anything
    # Codes rotate: the one shown a period later differs, and the one before still works once.
    clock.move(seconds=30)
    assert await code_now(client, shift_id) != good
    assert (await scan(client, good, "V00000001")).json()["result"] == "checked_in"


async def test_scans_are_refused_for_the_waitlisted_the_not_signed_up_and_before_check_in_opens(dispatch) -> None:
    client, _, clock = dispatch
    (shift_id,) = await open_shifts(client, await schedule(client), capacity=1)
    await sign_up(client, shift_id, "V00000001")
    assert (await sign_up(client, shift_id, "V00000002")).json()["position"] == "waitlisted"
    clock.now = FIRST_NIGHT.astimezone(UTC) - timedelta(hours=1)
    code = await code_now(client, shift_id)
    assert problem(await scan(client, code, "V00000001"))[::2] == (409, "not_open")
    assert problem(await scan(client, code, "V00000002"))[::2] == (409, "waitlisted")
    assert problem(await scan(client, code, "V00000003"))[::2] == (409, "not_signed_up")
    assert problem(await scan(client, code, "V0000000X"))[:2] == (422, "volunteer_number")


async def test_a_geofenced_shift_takes_a_scan_only_from_inside_its_circle(dispatch) -> None:
    client, _, clock = dispatch
    fence = {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 200}
    shift_id = await night_with(client, clock, "V00000001", geofence=fence)
    code = await code_now(client, shift_id)
    assert problem(await scan(client, code, "V00000001")) == (422, "position", "missing")
    far = await scan(client, code, "V00000001", lat=CENTRE[0] + 0.01, lon=CENTRE[1])  # about 1.1 km north
    assert problem(far) == (422, "position", "outside")
    near = await scan(client, code, "V00000001", lat=CENTRE[0] + 0.001, lon=CENTRE[1])  # about 110 m
    assert near.json()["result"] == "checked_in"


async def test_closing_an_ended_shift_checks_out_at_its_end_and_flags_whoever_forgot(dispatch) -> None:
    client, app, clock = dispatch
    shift_id = await night_with(client, clock, "V00000001", "V00000002")
    clock.now = FIRST_NIGHT.astimezone(UTC) + timedelta(minutes=5)
    for number in ("V00000001", "V00000002"):
        assert (await scan(client, await code_now(client, shift_id), number)).json()["result"] == "checked_in"
    clock.move(minutes=60)
    out = await scan(client, await code_now(client, shift_id), "V00000001")
    assert (out.json()["result"], out.json()["minutes"]) == ("checked_out", 60)

    events = app.state.runtime.store
    end = (FIRST_NIGHT + timedelta(hours=2)).astimezone(UTC)
    assert await attendance_handlers.close_ended_shifts(events, end - timedelta(seconds=1)) == []
    assert await attendance_handlers.close_ended_shifts(events, end + timedelta(minutes=1)) == [shift_id]
    attendance = {a["volunteer_number"]: a for a in (await client.get(f"/shifts/{shift_id}/attendance")).json()["items"]}
    assert (attendance["V00000001"]["minutes"], attendance["V00000001"]["flag"]) == (60, None)
    forgot = attendance["V00000002"]
    assert (forgot["minutes"], forgot["flag"]) == (115, "no_check_out")
    assert datetime.fromisoformat(forgot["checked_out_at"]) == end
    assert (await client.get(f"/shifts/{shift_id}")).json()["status"] == "closed"
    recorded = await eventually(lambda: records_of(client, "V00000002"), lambda items: len(items) == 1)
    assert [(r["minutes"], r["flag"]) for r in recorded] == [(115, "no_check_out")]
    attendance_types = [t for t in await event_types(app) if t != "ServiceRecorded"]
    assert attendance_types[-2:] == ["VolunteerCheckedOut", "AttendanceFlagged"]
    await eventually(lambda: records_of(client, "V00000001"), lambda items: len(items) == 1)
    before = await event_count(app)
    assert await attendance_handlers.close_ended_shifts(events, end + timedelta(minutes=2)) == []
    assert await event_count(app) == before
    clock.now = end + timedelta(minutes=3)
    late = await scan(client, await code_now(client, shift_id), "V00000002")
    assert (late.json()["result"], late.json()["minutes"]) == ("unchanged", 115)


async def test_attendance_events_are_published_per_volunteer_on_the_district_subject(dispatch, js) -> None:
    client, app, clock = dispatch
    shift_id = await night_with(client, clock, "V00000001")
    await scan(client, await code_now(client, shift_id), "V00000001")
    await eventually(lambda: app.state.runtime.store.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("DISPATCH")
    last = await js.get_msg("DISPATCH", info.state.last_seq)
    assert last.subject == "dispatch.370303.attendance.checked_in"
    envelope = json.loads(last.data)
    assert envelope["aggregate_id"] == f"{shift_id}.V00000001" and envelope["org_path"] == list(PATH)
    assert envelope["actor"] == "V00000001"
