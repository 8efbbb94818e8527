"""Dispatch's pages over a real store (SQLite and PostgreSQL) and NATS: a real shift's code as a
PNG and an SVG that rotate with the period, the display page for a screen or a printout, the
phone's check-in page the code opens and its words for every refusal a scan can earn, and an
unknown shift as a 404 problem. (No browser runs the pages' scripts here: see the report.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.dispatch import qr
from tests.infra.auth import staff, volunteer
from tests.infra.dispatch import Clock, dispatch_app, know_site, know_volunteer

STAFF = staff()
SITE = "ST-DENGHUI"
COMMUNITY = "370303001001"
PATH = ("370303", "370303001000", COMMUNITY)
TITLE = "元宵灯会<交通引导>"  # markup in a title must come out as text
SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_NIGHT = datetime(2027, 2, 11, 20, 0, tzinfo=SHANGHAI)  # a Thursday
CENTRE = (36.8130, 118.0550)
PERIOD = 30  # seconds: the service's default code period
PROBLEM = "application/problem+json"


@pytest.fixture
async def dispatch(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Clock]]:
    # Two days before the first night, at the very start of a code period.
    start = FIRST_NIGHT.astimezone(UTC) - timedelta(days=2)
    async with dispatch_app(nats_url, database_url, start - timedelta(seconds=start.timestamp() % PERIOD)) as running:
        await know_site(running[1], SITE, PATH)
        for n in (1, 2, 3):
            await know_volunteer(running[1], f"V{n:08d}", PATH)
        yield running


async def a_shift(client: httpx.AsyncClient, *signed_up: str, **shift: object) -> str:
    activity = {
        "site_id": SITE,
        "kind": "festival",
        "theme": "lantern_festival",
        "field": "civilised_traffic",
        "group_served": "public_needs",
        "starts_on": "2027-02-11",
        "ends_on": "2027-02-11",
        "title": TITLE,
        "posts": [{"post_id": "east_gate", "title": "东门路口", "required_skills": []}],
    }
    response = await client.post("/activities", json=activity, headers=STAFF)
    assert response.status_code == 201, response.text
    body = {
        "starts_at": FIRST_NIGHT.isoformat(),
        "ends_at": (FIRST_NIGHT + timedelta(hours=2)).isoformat(),
        "capacity": 10,
        "post_id": "east_gate",
        **shift,
    }
    response = await client.post(f"/activities/{response.json()['activity_id']}/shifts", json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    (shift_id,) = response.json()["shift_ids"]
    for number in signed_up:
        signed = await client.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": number}, headers=STAFF)
        assert signed.status_code == 200, signed.text
    return shift_id


async def code_now(client: httpx.AsyncClient, shift_id: str) -> dict[str, Any]:
    response = await client.get(f"/shifts/{shift_id}/code")
    assert response.status_code == 200, response.text
    return response.json()


def page_refusals(page: str) -> set[str]:
    """The keys of the check-in page's words for refusals."""
    block = page[page.index("const REFUSALS = {") : page.index("};", page.index("const REFUSALS = {"))]
    return set(re.findall(r'^\s*"([a-z_:]+)": \[', block, re.MULTILINE))


# --- The code as an image -------------------------------------------------------------------------


async def test_the_code_images_carry_the_check_in_url_of_the_shifts_current_code_and_are_never_cached(dispatch) -> None:
    client, *_ = dispatch
    shift_id = await a_shift(client)
    code = await code_now(client, shift_id)
    assert code["url"] == f"http://dispatch/check-in?code={code['code']}"

    svg = await client.get(f"/shifts/{shift_id}/code.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.content == qr.svg_of(code["url"])
    png = await client.get(f"/shifts/{shift_id}/code.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == qr.png_of(code["url"])
    bigger = await client.get(f"/shifts/{shift_id}/code.png", params={"scale": 20})
    assert bigger.content == qr.png_of(code["url"], scale=20)
    for image in (svg, png, bigger):
        assert image.headers["cache-control"] == "no-store"
        assert image.headers["x-beacon-valid-until"] == code["valid_until"]
    assert (await client.get(f"/shifts/{shift_id}/code.png", params={"scale": 41})).status_code == 422


async def test_the_code_images_point_phones_at_the_public_url_when_one_is_set(dispatch) -> None:
    client, app, _ = dispatch
    shift_id = await a_shift(client)
    app.state.public_url = "https://beacon.example.gov.cn/dispatch/"
    code = await code_now(client, shift_id)
    assert code["url"] == f"https://beacon.example.gov.cn/dispatch/check-in?code={code['code']}"
    assert (await client.get(f"/shifts/{shift_id}/code.svg")).content == qr.svg_of(code["url"])


async def test_the_image_rotates_when_the_period_rolls_over_and_not_before(dispatch) -> None:
    client, app, clock = dispatch
    shift_id = await a_shift(client)
    first = (await client.get(f"/shifts/{shift_id}/code.png")).content
    clock.move(seconds=PERIOD - 1)
    assert (await client.get(f"/shifts/{shift_id}/code.png")).content == first  # still the same step
    clock.move(seconds=1)
    rolled = (await client.get(f"/shifts/{shift_id}/code.png")).content
    assert rolled != first
    expected = app.state.shift_codes.code_for(shift_id, clock.now)
    assert rolled == qr.png_of(f"http://dispatch/check-in?code={expected}")
    assert expected.split(".")[1] == str(int(clock.now.timestamp()) // PERIOD)  # the step now


async def test_an_unknown_shift_is_a_404_problem_for_its_images_and_its_display(dispatch) -> None:
    client, *_ = dispatch
    for suffix in ("code.svg", "code.png", "display"):
        response = await client.get(f"/shifts/SH99999999/{suffix}")
        assert response.status_code == 404, suffix
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 404 and "SH99999999" in response.json()["detail"]
    malformed = await client.get("/shifts/not a shift!/code.svg")
    assert malformed.status_code == 422 and malformed.headers["content-type"] == PROBLEM


# --- The display page -----------------------------------------------------------------------------


async def test_the_display_page_shows_the_shift_and_refreshes_its_code_every_half_period(dispatch) -> None:
    client, *_ = dispatch
    shift_id = await a_shift(client)
    response = await client.get(f"/shifts/{shift_id}/display")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = response.text

    assert "元宵灯会&lt;交通引导&gt;" in page and TITLE not in page  # the title, as text
    assert SITE in page and "东门路口" in page and shift_id in page
    assert "2027年2月11日（周四）20:00–22:00" in page and "Thu 11 Feb 2027, 20:00–22:00" in page
    assert f'data-period-seconds="{PERIOD}"' in page and 'data-zone="Asia/Shanghai"' in page
    assert '<img id="code" src="code.svg"' in page  # relative: /shifts/{id}/code.svg, behind any path prefix
    assert 'fetch("code.svg", {cache: "no-store"})' in page and "setInterval(refresh, period / 2)" in page
    assert "@media print" in page
    assert "{{" not in page  # every slot filled


async def test_the_display_page_of_a_cancelled_shift_says_so_and_shows_no_code(dispatch) -> None:
    client, *_ = dispatch
    shift_id = await a_shift(client)
    cancelled = await client.post(f"/shifts/{shift_id}/cancel", json={"reason": "heavy_snow"}, headers=STAFF)
    assert cancelled.status_code == 200, cancelled.text
    page = (await client.get(f"/shifts/{shift_id}/display")).text
    assert 'data-status="cancelled"' in page and "本班次已取消 · This shift was cancelled" in page
    assert 'main:not([data-status="open"]) figure { display: none; }' in page


async def test_the_pages_load_nothing_from_elsewhere(dispatch) -> None:
    client, *_ = dispatch
    shift_id = await a_shift(client)
    pages = [(await client.get(f"/shifts/{shift_id}/display")).text, (await client.get("/check-in?code=x.1.y")).text]
    for page in pages:
        assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(https?:)?//", page)
        assert "@import" not in page and "url(" not in page


# --- The phone's check-in page --------------------------------------------------------------------


async def test_the_url_in_the_code_opens_the_check_in_page(dispatch) -> None:
    client, *_ = dispatch
    shift_id = await a_shift(client)
    url = urlsplit((await code_now(client, shift_id))["url"])
    response = await client.get(f"{url.path}?{url.query}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store" and response.headers["referrer-policy"] == "no-referrer"
    page = response.text
    assert 'data-zone="Asia/Shanghai"' in page and "{{" not in page
    assert (
        'get("code")' in page and "fetch(`shifts/${encodeURIComponent(shiftId)}`" in page
    )  # the shift, from GET /shifts/{id}
    assert 'fetch("scans"' in page and '"Authorization": `Bearer ${localStorage.getItem(TOKEN_KEY)' in page
    assert "localStorage" in page and "navigator.geolocation" in page
    assert "签到" in page and "签退" in page and "Check in" in page


async def test_the_check_in_page_has_words_for_every_refusal_a_scan_can_earn(dispatch) -> None:
    client, app, clock = dispatch
    words = page_refusals((await client.get("/check-in")).text)
    codes = app.state.shift_codes
    shift_id = await a_shift(client, "V00000001")
    fenced = await a_shift(client, "V00000001", geofence={"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 200})
    full = await a_shift(client, "V00000001", capacity=1)
    waiting = await client.post(f"/shifts/{full}/sign-ups", json={"volunteer_number": "V00000002"}, headers=STAFF)
    assert waiting.json()["position"] == "waitlisted"
    cancelled = await a_shift(client, "V00000001")
    assert (
        await client.post(f"/shifts/{cancelled}/cancel", json={"reason": "heavy_snow"}, headers=STAFF)
    ).status_code == 200

    async def refusal(code: str, number: str = "V00000001", **extra: object) -> tuple[int, str | None, str | None]:
        response = await client.post(
            "/scans", json={"code": code, "volunteer_number": number, **extra}, headers=volunteer(number)
        )
        assert response.status_code in (404, 409, 422), response.text
        body = response.json()
        return (
            response.status_code,
            (body.get("errors") or [{}])[0].get("field"),
            body.get("reason") or body.get("state"),
        )

    refusals = [await refusal(codes.code_for(shift_id, clock.now))]  # not open yet: two days early
    clock.now = FIRST_NIGHT.astimezone(UTC) - timedelta(minutes=10)
    now = codes.code_for(shift_id, clock.now)
    refusals += [
        await refusal(codes.code_for(shift_id, clock.now - timedelta(minutes=5))),  # stale
        await refusal(codes.code_for(shift_id, clock.now + timedelta(minutes=5))),  # future
        await refusal(now[:-4] + "AAAA"),  # forged
        await refusal("not a code"),  # malformed
        await refusal(now, shift_id=fenced),  # other shift
        await refusal(now, "V00000003"),  # not signed up
        await refusal(now, "12345"),  # not a volunteer number
        await refusal(codes.code_for(full, clock.now), "V00000002"),  # waitlisted
        await refusal(codes.code_for(cancelled, clock.now)),  # cancelled
        await refusal(codes.code_for(fenced, clock.now)),  # position missing
        await refusal(codes.code_for(fenced, clock.now), lat=CENTRE[0] + 0.01, lon=CENTRE[1]),  # outside
        await refusal(codes.code_for("SH99999999", clock.now)),  # unknown shift
    ]
    clock.now = (FIRST_NIGHT + timedelta(hours=3)).astimezone(UTC)
    refusals.append(await refusal(codes.code_for(shift_id, clock.now)))  # ended

    reasons = {reason for _, _, reason in refusals}
    assert {
        "not_open",
        "stale",
        "future",
        "forged",
        "malformed",
        "other_shift",
        "not_signed_up",
        "waitlisted",
        "cancelled",
        "missing",
        "outside",
        "ended",
    } <= reasons
    for status, field, reason in refusals:
        # The page's own order: 404 first, then a bad volunteer number, then field:reason, then reason.
        worded = status == 404 and "not_found" in words
        worded |= field == "volunteer_number" and "volunteer_number" in words
        worded |= f"{field}:{reason}" in words or reason in words
        assert worded, f"the check-in page has no words for {status} {field} {reason}"
