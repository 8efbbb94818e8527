"""Registry's teams and training through its HTTP API, over a real store (SQLite and PostgreSQL)
and NATS: the team lifecycle, refusals that write nothing, publication on the district's subject,
training sessions and their attendance."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.registry.app import RegistrySettings, create_app
from shared.citytime import city_today
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN, bearer, staff
from tests.infra.waiting import eventually

STAFF = staff()
SITE = "ST-HEPING"
TREE = (
    {"code": "370300", "level": "city", "name": "淄博市", "population": 4_700_000, "party_members": 300_000},
    {"code": "370303", "level": "district", "name": "张店区", "population": 1_000_000, "party_members": 60_000, "parent_code": "370300"},
    {"code": "370303001000", "level": "street", "name": "车站街道", "population": 80_000, "party_members": 5_000, "parent_code": "370303"},
    {"code": "370303001001", "level": "community", "name": "和平社区", "population": 8_000, "party_members": 500, "parent_code": "370303001000"},
)


@contextlib.asynccontextmanager
async def registry_app(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = RegistrySettings(
        nats_url=nats_url, database_url=database_url, personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://registry", headers=ADMIN) as client:
        yield client, app


async def open_site(client: httpx.AsyncClient, site_id: str) -> None:
    body = {"site_id": site_id, "org_unit_code": "370303001001", "level": "station", "kind": "community", "name": "和平社区新时代文明实践站"}
    response = await client.post("/sites", json=body)
    assert response.status_code == 201, response.text


@pytest.fixture
async def registry(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with registry_app(nats_url, database_url) as (client, app):
        for unit in TREE:
            response = await client.post("/org-units", json=unit)
            assert response.status_code == 201, response.text
        await open_site(client, SITE)
        yield client, app


async def register(client: httpx.AsyncClient, n: int) -> str:
    body = {
        "name": "张三",
        "id_number": resident_id(f"37030319850612{n:03d}"),
        "phone": f"1391234{n:04d}",
        "community_code": "370303001001",
        "skills": ["first_aid"],
        "consent": True,
    }
    response = await client.post("/volunteers", json=body)
    assert response.status_code == 201, response.text
    return response.json()["volunteer_number"]


def new_team(leader: str, **changes: object) -> dict[str, object]:
    return {
        "site_id": SITE, "name": "和平社区志愿服务队", "kind": "general", "description": "每周六清扫社区公园",
        "capacity": 5, "leader_number": leader, **changes,
    }


async def found_team(client: httpx.AsyncClient, leader: str, **changes: object) -> str:
    response = await client.post("/teams", json=new_team(leader, **changes))
    assert response.status_code == 201, response.text
    return response.json()["team_id"]


async def event_count(app: Any) -> int:
    events = app.state.registry.events
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


def field_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


async def test_a_team_goes_from_founding_through_applications_and_invitations_to_a_new_leader_and_dissolution(registry) -> None:
    client, app = registry
    leader, ann, bob, cat = [await register(client, n) for n in range(1, 5)]
    team_id = await found_team(client, leader)
    team = (await client.get(f"/teams/{team_id}")).json()
    assert (team["site_id"], team["leader_number"], team["capacity"], team["description"]) == (SITE, leader, 5, "每周六清扫社区公园")
    assert (team["members"], team["applicants"], team["invited"], team["dissolved"]) == ([leader], [], [], False)

    applied = await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": ann})
    assert applied.status_code == 200 and applied.json()["applicants"] == [ann]
    approved = await client.post(f"/teams/{team_id}/applications/{ann}/approve")
    assert approved.status_code == 200 and approved.json()["members"] == sorted([leader, ann])

    await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": cat})
    rejected = await client.post(f"/teams/{team_id}/applications/{cat}/reject")
    assert rejected.status_code == 200 and rejected.json()["applicants"] == []

    invited = await client.post(f"/teams/{team_id}/invitations", json={"volunteer_number": bob})
    assert invited.json()["invited"] == [bob]
    declined = await client.post(f"/teams/{team_id}/invitations/{bob}/decline")
    assert declined.json()["invited"] == []
    await client.post(f"/teams/{team_id}/invitations", json={"volunteer_number": bob})
    accepted = await client.post(f"/teams/{team_id}/invitations/{bob}/accept")
    assert accepted.json()["members"] == sorted([leader, ann, bob])

    # Invited and then applying is joining.
    await client.post(f"/teams/{team_id}/invitations", json={"volunteer_number": cat})
    joined = await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": cat})
    assert cat in joined.json()["members"] and joined.json()["invited"] == []

    handed = await client.put(f"/teams/{team_id}/leader", json={"volunteer_number": ann})
    assert handed.status_code == 200 and handed.json()["leader_number"] == ann
    left = await client.post(f"/teams/{team_id}/members/{leader}/leave")
    assert left.status_code == 200 and leader not in left.json()["members"]
    removed = await client.delete(f"/teams/{team_id}/members/{bob}")
    assert removed.status_code == 200 and removed.json()["members"] == sorted([ann, cat])

    # A volunteer may be in several teams.
    other = await found_team(client, cat, name="和平社区文艺队", kind="brand_project")
    assert (await client.get("/volunteers", params={"team": other})).json()["items"][0]["volunteer_number"] == cat
    assert [v["volunteer_number"] for v in (await client.get("/volunteers", params={"team": team_id})).json()["items"]] == sorted([ann, cat])

    dissolved = await client.post(f"/teams/{team_id}/dissolve", json={"reason": "项目结束"})
    assert dissolved.status_code == 200 and dissolved.json()["dissolved"] is True
    team = (await client.get(f"/teams/{team_id}")).json()
    assert team["dissolved"] is True and team["members"] == [] and team["leader_number"] == ann
    before = await event_count(app)
    again = await client.post(f"/teams/{team_id}/dissolve", json={"reason": "项目结束"})
    assert again.status_code == 200 and await event_count(app) == before  # dissolving twice changes nothing


async def test_refused_team_commands_are_409_and_leave_no_event(registry) -> None:
    client, app = registry
    leader, ann, bob, cat = [await register(client, n) for n in range(1, 5)]
    team_id = await found_team(client, leader, capacity=2)
    await client.post(f"/teams/{team_id}/invitations", json={"volunteer_number": ann})
    await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": bob})
    await client.post(f"/teams/{team_id}/invitations/{ann}/accept")
    before = await event_count(app)

    full = await client.post(f"/teams/{team_id}/applications/{bob}/approve")
    assert full.status_code == 409 and full.json()["state"] == "full", full.text
    assert (await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": cat})).status_code == 409
    leader_leaves = await client.post(f"/teams/{team_id}/members/{leader}/leave")
    assert leader_leaves.status_code == 409 and leader_leaves.json()["state"] == "leader"
    assert (await client.delete(f"/teams/{team_id}/members/{leader}")).status_code == 409
    stranger_leads = await client.put(f"/teams/{team_id}/leader", json={"volunteer_number": cat})
    assert stranger_leads.status_code == 409 and stranger_leads.json()["state"] == "not_member"
    not_applied = await client.post(f"/teams/{team_id}/applications/{cat}/approve")
    assert not_applied.status_code == 409 and not_applied.json()["state"] == "not_applied"
    bad_number = await client.post(f"/teams/{team_id}/applications/not-a-number/approve")
    assert bad_number.status_code == 422 and field_of(bad_number) == "number"
    assert await event_count(app) == before

    await client.post(f"/teams/{team_id}/dissolve", json={"reason": "人员调整"})
    before = await event_count(app)
    for response in (
        await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": cat}),
        await client.post(f"/teams/{team_id}/invitations", json={"volunteer_number": cat}),
        await client.put(f"/teams/{team_id}/leader", json={"volunteer_number": ann}),
    ):
        assert response.status_code == 409 and response.json()["state"] == "dissolved", response.text
    assert await event_count(app) == before


async def test_only_active_volunteers_lead_or_join_and_only_open_sites_get_teams(registry) -> None:
    client, app = registry
    leader, suspended, gone = [await register(client, n) for n in range(1, 4)]
    await client.post(f"/volunteers/{suspended}/suspend", json={"reason": "投诉核查中"})
    await client.post(f"/volunteers/{gone}/deregister", json={"on_request": False})
    await open_site(client, "ST-CLOSED")
    assert (await client.post("/sites/ST-CLOSED/close", json={"reason": "合并"})).status_code == 200
    team_id = await found_team(client, leader)
    before = await event_count(app)

    closed = await client.post("/teams", json=new_team(leader, site_id="ST-CLOSED"))
    assert closed.status_code == 409 and field_of(closed) == "site_id" and closed.json()["state"] == "closed"
    unknown_site = await client.post("/teams", json=new_team(leader, site_id="ST-NOWHERE"))
    assert unknown_site.status_code == 404 and field_of(unknown_site) == "site_id"
    led_by_suspended = await client.post("/teams", json=new_team(suspended))
    assert led_by_suspended.status_code == 409 and field_of(led_by_suspended) == "leader_number"
    assert led_by_suspended.json()["state"] == "suspended"
    led_by_nobody = await client.post("/teams", json=new_team("V99999999"))
    assert led_by_nobody.status_code == 404 and field_of(led_by_nobody) == "leader_number"
    for number, state in ((suspended, "suspended"), (gone, "deregistered")):
        for path in ("applications", "invitations"):
            response = await client.post(f"/teams/{team_id}/{path}", json={"volunteer_number": number})
            assert response.status_code == 409 and response.json()["state"] == state, response.text
            assert field_of(response) == "volunteer_number"
    nobody = await client.post(f"/teams/{team_id}/applications", json={"volunteer_number": "V99999999"})
    assert nobody.status_code == 404 and field_of(nobody) == "volunteer_number"
    assert (await client.post("/teams/T99999999/applications", json={"volunteer_number": leader})).status_code == 404
    assert await event_count(app) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"kind": "professional"}, "field"),
        ({"kind": "professional", "field": "  "}, "field"),
        ({"kind": "choir"}, "kind"),
        ({"name": ""}, "name"),
        ({"site_id": "站 1"}, "site_id"),
        ({"leader_number": "12345"}, "leader_number"),
        ({"description": "x" * 2001}, "description"),
    ],
)
async def test_bad_team_fields_are_422_naming_the_field_and_leave_no_event(registry, changes: dict, field: str) -> None:
    client, app = registry
    leader = await register(client, 1)
    before = await event_count(app)
    response = await client.post("/teams", json=new_team(leader, **changes))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field_of(response) == field and response.json()["errors"][0]["reason"]
    assert await event_count(app) == before
    # The refused founding took no team number either.
    assert await found_team(client, leader) == "T00000001"


async def test_teams_are_listed_by_site_and_kind_a_page_at_a_time(registry) -> None:
    client, _ = registry
    leaders = [await register(client, n) for n in range(1, 5)]
    await open_site(client, "ST-OTHER")
    ids = [
        await found_team(client, leaders[0]),
        await found_team(client, leaders[1], kind="professional", field="medical"),
        await found_team(client, leaders[2], kind="professional", field="legal"),
        await found_team(client, leaders[3], site_id="ST-OTHER"),
    ]
    await client.post(f"/teams/{ids[0]}/applications", json={"volunteer_number": leaders[1]})
    await client.post(f"/teams/{ids[0]}/applications/{leaders[1]}/approve")

    first = (await client.get("/teams", params={"site": SITE, "limit": 2})).json()
    assert [t["team_id"] for t in first["items"]] == ids[:2] and first["next"] == ids[1]
    assert first["items"][0]["member_count"] == 2
    second = (await client.get("/teams", params={"site": SITE, "limit": 2, "after": first["next"]})).json()
    assert [t["team_id"] for t in second["items"]] == [ids[2]] and second["next"] is None
    professional = (await client.get("/teams", params={"kind": "professional"})).json()["items"]
    assert [(t["team_id"], t["field"]) for t in professional] == [(ids[1], "medical"), (ids[2], "legal")]

    await client.post(f"/teams/{ids[3]}/dissolve", json={"reason": "站点合并"})
    assert (await client.get("/teams", params={"site": "ST-OTHER"})).json()["items"] == []
    gone = (await client.get("/teams", params={"site": "ST-OTHER", "dissolved": True})).json()["items"]
    assert [t["team_id"] for t in gone] == [ids[3]]
    assert (await client.get("/teams/T99999999")).status_code == 404


async def test_team_events_reach_the_registry_stream_on_the_sites_district_subject(registry, js) -> None:
    client, app = registry
    leader, ann = await register(client, 1), await register(client, 2)
    team_id = await found_team(client, leader)
    await client.post(f"/teams/{team_id}/invitations", json={"volunteer_number": ann})
    await client.post(f"/teams/{team_id}/invitations/{ann}/accept")

    await eventually(lambda: app.state.registry.events.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("REGISTRY")
    messages = [await js.get_msg("REGISTRY", seq) for seq in range(1, info.state.last_seq + 1)]
    by_subject = {m.subject: json.loads(m.data) for m in messages}
    created = by_subject["registry.370303.team.created"]
    assert created["payload"]["team_id"] == team_id and created["payload"]["leader_number"] == leader
    assert created["org_path"] == ["370303", "370303001000", "370303001001"]
    assert "description" not in created["payload"]  # free text stays in the registry
    assert "registry.370303.team.member_invited" in by_subject
    assert by_subject["registry.370303.team.member_joined"]["payload"] == {"team_id": team_id, "volunteer_number": ann, "via": "invitation"}


async def test_a_training_session_records_its_attendance_once_and_refuses_what_it_cannot_record(registry) -> None:
    client, app = registry
    ann, bob = await register(client, 1), await register(client, 2)
    session = {"site_id": SITE, "topic": "first_aid", "held_on": city_today().isoformat(), "hours": 2.5, "trainer": "李医生"}
    before = await event_count(app)
    future = await client.post("/training-sessions", json={**session, "held_on": (city_today() + timedelta(days=1)).isoformat()})
    assert future.status_code == 422 and field_of(future) == "held_on"
    for changes, field in (({"hours": 0}, "hours"), ({"topic": "First Aid"}, "topic"), ({"trainer": ""}, "trainer")):
        response = await client.post("/training-sessions", json={**session, **changes})
        assert response.status_code == 422 and field_of(response) == field, response.text
    unknown_site = await client.post("/training-sessions", json={**session, "site_id": "ST-NOWHERE"})
    assert unknown_site.status_code == 404 and field_of(unknown_site) == "site_id"
    assert await event_count(app) == before

    held = await client.post("/training-sessions", json=session)
    assert held.status_code == 201, held.text
    session_id = held.json()["session_id"]
    first = await client.post(f"/training-sessions/{session_id}/attendance", json={"volunteer_numbers": [bob, ann, bob]})
    assert first.status_code == 200 and first.json()["recorded"] == sorted([ann, bob])
    second = await client.post(f"/training-sessions/{session_id}/attendance", json={"volunteer_numbers": [ann, bob]})
    assert second.status_code == 200 and second.json()["recorded"] == []

    carl = await register(client, 3)
    before = await event_count(app)
    unknown = await client.post(f"/training-sessions/{session_id}/attendance", json={"volunteer_numbers": [carl, "V99999999"]})
    assert unknown.status_code == 404 and field_of(unknown) == "volunteer_numbers" and "V99999999" in unknown.json()["detail"]
    assert (await client.post(f"/training-sessions/{session_id}/attendance", json={"volunteer_numbers": []})).status_code == 422
    assert (await client.post("/training-sessions/S99999999/attendance", json={"volunteer_numbers": [ann]})).status_code == 404
    assert await event_count(app) == before

    # The leader of a team of the session's site sees it, but is not staff.
    leader = bearer("team_leader", await found_team(client, ann))
    masked = (await client.get(f"/training-sessions/{session_id}", headers=leader)).json()
    assert masked["attendees"] == sorted([ann, bob]) and masked["trainer"] == "李**"
    assert (masked["topic"], masked["hours"], masked["held_on"]) == ("first_aid", 2.5, city_today().isoformat())
    assert (await client.get(f"/training-sessions/{session_id}", headers=STAFF)).json()["trainer"] == "李医生"
    assert (await client.get("/training-sessions/S99999999")).status_code == 404

    # The trainer's name is kept by the registry, never in an event.
    (envelope,) = [e for e in await app.state.registry.events.load("training", session_id) if e.type == "TrainingSessionHeld"]
    assert "trainer" not in envelope.payload and "李医生" not in json.dumps(envelope.payload, ensure_ascii=False)


@pytest.fixture
def machine_a_day_off_the_city() -> Iterator[None]:
    """The process's local zone set to one whose date, right now, is not the city's (Asia/Shanghai)."""
    saved = os.environ.get("TZ")
    # UTC-12 is on another day until 20:00 in the city, UTC+14 from 18:00: one of them always is.
    for zone in ("Etc/GMT+12", "Etc/GMT-14"):
        os.environ["TZ"] = zone
        time.tzset()
        if date.today() != city_today():
            break
    assert date.today() != city_today()
    yield
    if saved is None:
        os.environ.pop("TZ")
    else:
        os.environ["TZ"] = saved
    time.tzset()


async def test_the_days_a_user_enters_are_checked_against_the_citys_today_not_the_machines(
    registry, machine_a_day_off_the_city
) -> None:
    client, _ = registry
    today, tomorrow = city_today(), city_today() + timedelta(days=1)
    session = {"site_id": SITE, "topic": "first_aid", "hours": 2, "trainer": "李医生"}
    held_today = await client.post("/training-sessions", json={**session, "held_on": today.isoformat()})
    assert held_today.status_code == 201, held_today.text
    held_tomorrow = await client.post("/training-sessions", json={**session, "held_on": tomorrow.isoformat()})
    assert held_tomorrow.status_code == 422 and field_of(held_tomorrow) == "held_on"

    ann = await register(client, 1)
    granted = await client.post(f"/volunteers/{ann}/certifications", json={"certification": "first_aid", "expires_on": tomorrow.isoformat()})
    assert granted.status_code == 200, granted.text
    last = (await client.get(f"/volunteers/{ann}/history")).json()[-1]
    assert last["type"] == "CertificationGranted" and last["payload"]["granted_on"] == today.isoformat()
