"""The pages for people, in headless Chromium (Debian's `chromium`, driven over DevTools: see
tests/infra/browser.py) against the four services served for real, with the two districts of
tests/infra/scope/ seeded through the APIs: the sign-in page, the staff order board (orders by
state; a dispatch from the suggestions moves an order), the volunteer's phone pages (shifts,
hours, points, certificates) in a phone-sized window, every page in Chinese and in English
without an untranslated word; the browser calling the other services (CORS); and problem details
in the caller's language. Screenshots go to the test's tmp dir (their paths are printed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from shared.auth import Role
from shared.citytime import CITY_ZONE, city_date
from shared.envelope import utcnow
from tests.infra.auth import bearer, token_for
from tests.infra.browser import PHONE, Tab, browser
from tests.infra.nats import nats_server
from tests.infra.scope import COMMUNITY_A, DISTRICT_A, World, created
from tests.infra.scope import dispatch as dispatch_seed
from tests.infra.scope import points as points_seed
from tests.infra.scope import registry as registry_seed
from tests.infra.served import ServedCity, served_city

PASSWORD = "correct horse battery staple"  # the seed's accounts' (tests/infra/scope/registry.py)
DISTRICT_STAFF = (Role.district_admin, DISTRICT_A)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedCity, World]]:
    with nats_server() as nats_url, served_city(nats_url, tmp_path_factory.mktemp("people")) as served:
        for app in served.apps.values():  # the origins of each other's pages: their ports, known only now
            app.state.cors_origins.update(served.urls.values())
        served.apps["dispatch"].state.service_urls = {
            "registry": served.urls["registry"],
            "points": served.urls["points"],
        }
        world = World()
        for rules in (registry_seed, dispatch_seed, points_seed):
            rules.seed(served, world)
        registry_seed.seed_late(served, world)  # waits until registry has heard of the confirmed records
        yield served, world


def place_order(city: ServedCity, world: World) -> str:
    """A fresh order in district A, the day after tomorrow (nobody is busy then): placed."""
    day = city_date(utcnow()) + timedelta(days=2)
    start = (
        utcnow().replace(year=day.year, month=day.month, day=day.day).astimezone(CITY_ZONE).replace(hour=9, minute=0)
    )
    body = {
        "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": COMMUNITY_A,
        "site_id": world.inside["site_id"], "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=2)).isoformat(), "headcount": 1, "placed_via": "community_staff",
        "description": "陪老人去医院",
    }  # fmt: skip
    with httpx.Client(base_url=city.urls["dispatch"], headers=bearer(*DISTRICT_STAFF), timeout=30) as dispatch:
        return created(dispatch.post("/orders", json=body))["order_id"]


async def translated(tab: Tab) -> None:
    """Every word the page shows came from its dictionary in its language."""
    assert await tab.evaluate("Beacon.untranslated") == []
    empty = await tab.evaluate(
        "[...document.querySelectorAll('[data-t]')].filter(e => !e.textContent.trim()).map(e => e.dataset.t)"
    )
    assert empty == []


# --- The staff order board ------------------------------------------------------------------------


async def test_the_board_shows_orders_by_state_and_a_dispatch_from_the_suggestions_moves_one(
    city, tmp_path: Path
) -> None:
    served, world = city
    order_id = place_order(served, world)
    accepted, outside = world.inside["order_id"], world.outside["order_id"]
    board = f"{served.urls['dispatch']}/board?lang=zh#token={token_for(*DISTRICT_STAFF)}"
    async with browser(tmp_path / "profile") as chromium:
        tab = await chromium.tab()
        await tab.open(board)
        await tab.until(
            f"document.querySelector('.column[data-state=placed] [data-order={order_id}]')",
            what="the new order, placed",
        )
        assert await tab.text(".column[data-state=placed] h2 span") == "待派单"
        assert await tab.evaluate(f"!!document.querySelector('.column[data-state=accepted] [data-order={accepted}]')")
        assert outside not in await tab.text("#columns")  # district B's order is out of this staff member's reach
        await tab.screenshot(tmp_path / "board-zh.png")

        await tab.click(f".column[data-state=placed] [data-order={order_id}]")
        await tab.until(
            "document.querySelector('#suggestions [data-dispatch]')", what="a suggested volunteer to dispatch to"
        )
        assert "OrderPlaced" in await tab.evaluate(
            "[...document.querySelectorAll('#history [data-event]')].map(e => e.dataset.event).join()"
        )
        assert "下单" in await tab.text("#history")
        first = await tab.evaluate("document.querySelector('#suggestions [data-dispatch]').dataset.dispatch")
        await tab.screenshot(tmp_path / "board-suggestions-zh.png")
        await tab.click("#suggestions [data-dispatch]")
        await tab.until(
            f"document.querySelector('.column[data-state=dispatched] [data-order={order_id}]')",
            what="the order, dispatched",
        )
        assert not await tab.evaluate(f"!!document.querySelector('.column[data-state=placed] [data-order={order_id}]')")
        await tab.until(
            "document.querySelector('#history [data-event=OrderDispatched]')", what="the dispatch in its history"
        )
        assert f"已派给 {first}" in await tab.text("#message")
        await translated(tab)
        await tab.screenshot(tmp_path / "board-dispatched-zh.png")

    with httpx.Client(base_url=served.urls["dispatch"], headers=bearer(*DISTRICT_STAFF), timeout=30) as dispatch:
        order = created(dispatch.get(f"/orders/{order_id}"))
    assert order["status"] == "dispatched" and order["addressees"] == [first]


async def test_the_board_speaks_english_when_asked_and_filters_by_community(city, tmp_path: Path) -> None:
    served, _ = city
    async with browser(tmp_path / "profile") as chromium:
        tab = await chromium.tab()
        await tab.open(f"{served.urls['dispatch']}/board?lang=en#token={token_for(Role.city_admin, '370300')}")
        await tab.until("document.querySelectorAll('.card').length > 0", what="orders")
        headings = await tab.evaluate(
            "[...document.querySelectorAll('.column h2 span:first-child')].map(e => e.textContent)"
        )
        assert headings == [
            "Placed",
            "Dispatched",
            "Open for taking",
            "Accepted",
            "Taken",
            "Completed",
            "Rated",
            "Cancelled",
            "Overdue",
        ]
        both = await tab.evaluate(
            "new Set([...document.querySelectorAll('.card .meta')].map(e => e.textContent.split(' · ')[1]).filter(Boolean)).size"
        )
        assert both == 2  # the city admin sees both districts' communities
        await tab.evaluate(
            f"(() => {{ const s = document.getElementById('community'); s.value = '{COMMUNITY_A}'; s.dispatchEvent(new Event('change')); }})()"
        )
        shown = await tab.evaluate(
            "[...new Set([...document.querySelectorAll('.card .meta')].map(e => e.textContent.split(' · ')[1]).filter(Boolean))]"
        )
        assert shown == [COMMUNITY_A]
        assert await tab.text("header .switch-language") == "中文"
        await translated(tab)
        await tab.screenshot(tmp_path / "board-en.png")


# --- The volunteer's phone pages ------------------------------------------------------------------


async def test_the_phone_pages_show_the_volunteers_shifts_hours_and_points_in_both_languages(
    city, tmp_path: Path
) -> None:
    served, world = city
    member, account = world.inside["number"], world.inside["account_id"]
    token = token_for(Role.volunteer, member, account=account)
    with httpx.Client(timeout=30, headers=bearer(Role.volunteer, member, account=account)) as api:
        points = created(api.get(f"{served.urls['points']}/accounts/{member}"))
        records = created(api.get(f"{served.urls['dispatch']}/volunteers/{member}/service-records"))
    assert records["confirmed_records"] == 2 and records["confirmed_hours"] == "4"  # the seed's entry and attendance

    async with browser(tmp_path / "profile") as chromium:
        tab = await chromium.tab()
        for lang, words in (
            ("zh", ("我的班次", "灯会交通引导", "已报名", "已确认", "可用积分")),
            ("en", ("My shifts", "灯会交通引导", "Signed up", "Confirmed", "Points")),
        ):
            await tab.open(f"{served.urls['dispatch']}/me?lang={lang}#token={token}", size=PHONE)
            await tab.until("document.querySelector('main').dataset.loaded === 'yes'", what="the volunteer's things")
            assert await tab.evaluate("document.documentElement.lang") == lang
            assert await tab.text("#number") == member
            assert await tab.evaluate(
                f"!!document.querySelector('#shift-list [data-shift={world.inside['shift_id']}]')"
            )
            assert await tab.text("#confirmed-hours") == "4" and await tab.text("#confirmed-records") == "2"
            assert await tab.evaluate("document.querySelectorAll('#record-list [data-record]').length") == 2
            assert await tab.text("#balance") == str(points["balance"])
            assert await tab.text("#points-hours") == points["hours"]
            assert await tab.text("#time-credits") == str(points["time_credit_minutes"])
            body = await tab.text()
            for word in words:
                assert word in body, (lang, word)
            # Registry lists no certificates yet: the section says so, and offers to issue one.
            assert await tab.evaluate("document.getElementById('certificate-list').dataset.listed") == "no"
            assert await tab.evaluate("!document.getElementById('issue').hidden")
            assert (
                await tab.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
            )  # nothing wider than the phone
            await translated(tab)
            await tab.screenshot(tmp_path / f"me-{lang}.png")

        await tab.click("#issue")  # a certificate over this year's confirmed records, from registry
        unlisted = await tab.text("#certificate-note")
        await tab.until(f"document.getElementById('certificate-note').innerText !== {unlisted!r}", what="an answer")
        note = await tab.text("#certificate-note")
        assert note.startswith("Certificate ZYZM-") and note.endswith(" issued."), note
        await tab.until("document.querySelector('#certificate-list [data-certificate]')", what="the certificate listed")
        assert await tab.text("#certificate-list [data-certificate] button") == "Open the PDF"
        assert "ZYZM-" in await tab.text("#certificate-list")
        await translated(tab)


async def test_signing_in_keeps_the_token_in_the_tab_and_goes_on_to_the_volunteers_pages(city, tmp_path: Path) -> None:
    served, world = city
    async with browser(tmp_path / "profile") as chromium:
        tab = await chromium.tab()
        await tab.open(f"{served.urls['dispatch']}/me?lang=zh", size=PHONE)  # not signed in: sent to sign in
        await tab.until("location.pathname === '/sign-in'", what="the sign-in page")
        assert await tab.text("h1") == "登录"
        await translated(tab)

        await tab.evaluate("document.getElementById('username').value = 'scope-member-a'")
        await tab.evaluate("document.getElementById('password').value = 'not the password'")
        await tab.click("#submit")
        await tab.until(
            "document.getElementById('message').textContent.includes('用户名或密码错误')",
            what="the refusal, in Chinese",
        )
        await tab.screenshot(tmp_path / "sign-in-refused-zh.png")

        await tab.evaluate(f"document.getElementById('password').value = {PASSWORD!r}")
        await tab.click("#submit")
        await tab.until(
            "location.pathname === '/me' && document.querySelector('main').dataset.loaded === 'yes'",
            what="the volunteer's pages",
        )
        assert await tab.text("#number") == world.inside["number"]
        assert await tab.evaluate("sessionStorage.getItem('beacon.access_token').split('.').length") == 3
        assert await tab.evaluate("localStorage.length") == 0  # kept in the tab only

        await tab.open(f"{served.urls['dispatch']}/sign-in?lang=en")
        assert await tab.text("h1") == "Sign in" and await tab.text("#submit") == "Sign in"
        await translated(tab)


# --- Browsers calling the other services; problem details in the caller's language ---------------


def test_a_page_of_another_service_may_call_the_api_and_a_stranger_may_not(city) -> None:
    served, _ = city
    dispatch_origin = served.urls["dispatch"]
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,accept-language"}
    with httpx.Client(timeout=30) as client:
        allowed = client.options(f"{served.urls['points']}/redemptions", headers={"Origin": dispatch_origin, **ask})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == dispatch_origin
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        stranger = client.options(
            f"{served.urls['points']}/redemptions", headers={"Origin": "http://elsewhere.example", **ask}
        )
        assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
        refused = client.get(f"{served.urls['registry']}/accounts/x", headers={"Origin": dispatch_origin})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == dispatch_origin
        assert "access-control-allow-credentials" not in refused.headers  # tokens, never cookies


def test_problems_answer_in_the_callers_language(city) -> None:
    served, world = city
    staff = bearer(*DISTRICT_STAFF)
    member = world.inside["number"]
    bad_order = {"group_served": "elderly", "field": "smart_help_for_elderly", "community_code": "12", "headcount": 0}
    with httpx.Client(base_url=served.urls["dispatch"], timeout=30) as dispatch:
        zh = dispatch.post("/orders", json=bad_order, headers={**staff, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
        en = dispatch.post("/orders", json=bad_order, headers={**staff, "Accept-Language": "en-GB"})
        plain = dispatch.post("/orders", json=bad_order, headers=staff)  # an API client naming no language
        assert zh.status_code == en.status_code == plain.status_code == 422
        assert zh.headers["content-language"] == "zh" and en.headers["content-language"] == "en"
        reasons = {e["field"]: e["reason"] for e in zh.json()["errors"]}
        assert zh.json()["title"] == "请求无效"
        assert reasons["headcount"] == "应不小于 1" and reasons["site_id"] == "必填项缺失"
        assert reasons["community_code"] == r"格式不符（应匹配 ^\d{12}$）"
        english = {e["field"]: e["reason"] for e in en.json()["errors"]}
        assert (
            en.json()["title"] == "Invalid request"
            and english["headcount"] == "Input should be greater than or equal to 1"
        )
        assert plain.json() == en.json()

        for language, title, detail in (
            ("zh", "未找到", "未知的工单 O99999999"),
            ("en", "NotFound", "unknown order O99999999"),
        ):
            missing = dispatch.get("/orders/O99999999", headers={**staff, "Accept-Language": language})
            assert missing.status_code == 404 and (missing.json()["title"], missing.json()["detail"]) == (title, detail)

        anonymous = dispatch.get("/orders", headers={"Accept-Language": "zh"})
        assert anonymous.status_code == 401 and anonymous.json()["detail"].startswith("请先登录")
        volunteer = bearer(Role.volunteer, member, account=world.inside["account_id"])
        forbidden = dispatch.get("/orders", headers={**volunteer, "Accept-Language": "zh"})
        assert forbidden.status_code == 403 and forbidden.json()["detail"].startswith("志愿者无权执行此操作")

        # What a volunteer meets at the door: a scan's refusal, with its reason code untouched.
        scan = dispatch.post(
            "/scans",
            json={"code": "not-a-code", "volunteer_number": member},
            headers={**volunteer, "Accept-Language": "zh"},
        )
        assert scan.status_code == 422 and scan.json()["reason"] == "malformed"
        assert (
            scan.json()["detail"] == "这不是 Beacon 的班次签到码"
            and scan.json()["errors"][0]["reason"] == "这不是 Beacon 的班次签到码"
        )
