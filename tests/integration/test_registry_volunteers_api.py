"""Registry's volunteers through its HTTP API, over a real store (SQLite and PostgreSQL) and NATS:
real-name registration, sealed personal data, lifecycle, report-in, transfer, certifications,
the tree import and search."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from services.registry.app import RegistrySettings, create_app
from shared.auth import Role
from shared.citytime import city_today
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN, bearer, staff
from tests.infra.auth import volunteer as volunteer_self
from tests.infra.waiting import eventually

STAFF = staff()
TREE = """code,parent_code,level,name,population,party_members
370303001001,370303001000,community,和平社区,8000,500
370300,,city,淄博市,4700000,300000
370303,370300,district,张店区,1000000,60000
370303001000,370303,street,车站街道,80000,5000
370303001002,370303001000,community,新华社区,9000,600
370305,370300,district,临淄区,600000,40000
370305001000,370305,street,闻韶街道,50000,3000
370305001001,370305001000,community,齐都社区,7000,400
"""


@contextlib.asynccontextmanager
async def registry_app(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    app = create_app(
        RegistrySettings(nats_url=nats_url, database_url=database_url, personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY)
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry", headers=ADMIN) as client:
            yield client, app


@pytest.fixture
async def registry(nats_url: str, database_url: str):
    async with registry_app(nats_url, database_url) as (client, app):
        response = await client.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"})
        assert response.status_code == 200, response.text
        yield client, app


def volunteer(n: int, **changes: object) -> dict[str, object]:
    return {
        "name": "王小明",
        "id_number": resident_id(f"370303199001{n:02d}123"),
        "phone": f"1391234{n:04d}",
        "community_code": "370303001001",
        "political_status": "party_member",
        "skills": ["first_aid", "Elder_Care"],
        "tags": ["会说方言", "有车"],
        "consent": True,
        **changes,
    }


async def stored_text(app, *tables: str) -> str:
    """Everything in these tables as text, bytes decoded where they decode."""
    values = []
    async with app.state.registry.events.engine.connect() as conn:
        for table in tables:
            for row in (await conn.exec_driver_sql(f"SELECT * FROM {table}")).all():
                values += [v.decode("utf-8", "ignore") if isinstance(v, bytes) else str(v) for v in row]
    return " ".join(values)


async def event_count(app) -> int:
    events = app.state.registry.events
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


async def test_the_tree_file_loads_in_any_order_once_and_is_refused_whole_naming_the_line(registry) -> None:
    client, app = registry
    unit = (await client.get("/org-units/370303001000")).json()
    assert unit["path"] == ["370303", "370303001000"] and unit["children"] == ["370303001001", "370303001002"]
    again = await client.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"})
    assert again.json() == {"created": 0, "already_present_lines": [2, 3, 4, 5, 6, 7, 8, 9]}

    before = await event_count(app)
    bad_parent = "code,parent_code,level,name,population,party_members\n370303002000,370303,street,公园街道,1,0\n370303002001,370303009000,community,X,1,0\n"
    response = await client.post("/org-units/import", content=bad_parent, headers={"content-type": "text/csv"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "file", "reason": "line 3: parent 370303009000 of 370303002001 is unknown"}]
    duplicate = json.dumps([
        {"code": "370303003000", "parent_code": "370303", "level": "street", "name": "A", "population": 1, "party_members": 0},
        {"code": "370303003000", "parent_code": "370303", "level": "street", "name": "B", "population": 1, "party_members": 0},
    ])
    response = await client.post("/org-units/import", content=duplicate, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "line 2: code 370303003000 already appears on line 1" in response.json()["detail"]
    assert await event_count(app) == before  # nothing half-written
    assert (await client.get("/org-units/370303002000")).status_code == 404


async def test_personal_data_is_sealed_masked_for_most_and_clear_for_staff(registry) -> None:
    client, app = registry
    response = await client.post("/volunteers", json=volunteer(1))
    assert response.status_code == 201, response.text
    number = response.json()["volunteer_number"]

    masked = (await client.get(f"/volunteers/{number}", headers=volunteer_self(number))).json()  # not staff: masked
    assert masked["id_number"] == volunteer(1)["id_number"][:6] + "********" + volunteer(1)["id_number"][14:]
    assert masked["phone"] == "139****0001" and masked["name"] == "王**"
    assert masked["skills"] == ["elder_care", "first_aid"] and masked["age_band"] == "35_59"
    assert masked["tags"] == ["会说方言", "有车"]
    clear = (await client.get(f"/volunteers/{number}", headers=STAFF)).json()
    assert (clear["name"], clear["id_number"], clear["phone"]) == ("王小明", volunteer(1)["id_number"], "13912340001")

    # Neither the store's rows nor the events hold the personal data in clear.
    dump = await stored_text(app, "volunteers", "volunteer_keys", "events", "outbox")
    for secret in ("王小明", volunteer(1)["id_number"], "13912340001"):
        assert secret not in dump


async def test_an_id_number_already_registered_names_its_volunteer_only_to_whoever_reaches_them(registry) -> None:
    # The volunteer number is what their events carry: tying it to an ID number for anyone who
    # knows that number would undo the events' pseudonyms.
    client, _ = registry
    number = (await client.post("/volunteers", json=volunteer(1))).json()["volunteer_number"]
    askers = {
        "nobody signed in": {"Authorization": ""},
        "another district's staff": bearer(Role.district_admin, "370305"),
        "another volunteer": volunteer_self("V99999999"),
    }
    for who, headers in askers.items():
        again = await client.post("/volunteers", json=volunteer(1, phone="13800000000"), headers=headers)
        assert again.status_code == 409, who
        assert "volunteer_number" not in again.json() and number not in again.text, who
        assert again.json()["title"] == "Conflict" and again.json()["errors"][0]["field"] == "id_number", who
    for who, headers in {"the district's staff": bearer(Role.district_admin, "370303"), "the volunteer": volunteer_self(number)}.items():
        again = await client.post("/volunteers", json=volunteer(1, phone="13800000000"), headers=headers)
        assert again.status_code == 409 and again.json()["volunteer_number"] == number, who


async def test_the_same_id_number_twice_is_a_409_naming_the_volunteer_and_bad_fields_are_422(registry) -> None:
    client, app = registry
    number = (await client.post("/volunteers", json=volunteer(1))).json()["volunteer_number"]
    before = await event_count(app)
    again = await client.post("/volunteers", json=volunteer(1, phone="13800000000"))
    assert again.status_code == 409 and again.json()["volunteer_number"] == number
    cases = {
        "id_number": volunteer(2, id_number=volunteer(2)["id_number"][:17] + ("1" if volunteer(2)["id_number"][17] != "1" else "2")),
        "community_code": volunteer(2, community_code="370303001999"),
        "phone": volunteer(2, phone="12345678901"),
        "consent": volunteer(2, consent=False),
        "skills": volunteer(2, skills=["basket_weaving"]),
        "tags": volunteer(2, tags=["这个标签实在是太长了超过了二十个字符的限制了吧"]),
    }
    for field, body in cases.items():
        response = await client.post("/volunteers", json=body)
        assert response.status_code in (404, 422), (field, response.text)
        assert response.json()["errors"][0]["field"] == field, response.json()
    future = volunteer(3, id_number=resident_id(f"3703032{city_today().year + 1 - 2000:03d}0101123"))
    response = await client.post("/volunteers", json=future)
    assert response.status_code == 422 and "future" in response.json()["detail"]
    assert await event_count(app) == before


async def test_the_lifecycle_runs_pending_verified_suspended_reactivated_deregistered(registry) -> None:
    client, _ = registry
    number = (await client.post("/volunteers", json=volunteer(1))).json()["volunteer_number"]
    assert (await client.post(f"/volunteers/{number}/reactivate")).status_code == 409
    assert (await client.post(f"/volunteers/{number}/verify", headers=STAFF)).json()["status"] == "verified"
    assert (await client.post(f"/volunteers/{number}/verify", headers=STAFF)).json()["status"] == "verified"  # idempotent
    profile = await client.put(f"/volunteers/{number}/profile", json={"political_status": "party_member", "skills": ["tutoring"], "tags": ["周末有空"]})
    assert (profile.json()["skills"], profile.json()["tags"]) == (["tutoring"], ["周末有空"])
    assert (await client.get(f"/volunteers/{number}")).json()["tags"] == ["周末有空"]
    assert (await client.post(f"/volunteers/{number}/suspend", json={"reason": "no-show"})).json()["status"] == "suspended"
    assert (await client.post(f"/volunteers/{number}/reactivate")).json()["status"] == "verified"
    assert (await client.post(f"/volunteers/{number}/deregister", json={"on_request": False})).json()["status"] == "deregistered"
    refused = await client.post(f"/volunteers/{number}/verify")
    assert refused.status_code == 409 and refused.json()["state"] == "deregistered"
    history = (await client.get(f"/volunteers/{number}/history")).json()
    assert [h["type"] for h in history] == [
        "VolunteerRegistered", "VolunteerVerified", "VolunteerProfileUpdated", "VolunteerSuspended", "VolunteerReactivated", "VolunteerDeregistered",
    ]
    assert history[1]["actor"] == "staff-7"
    assert (await client.get("/volunteers/V99999999")).status_code == 404


async def test_deregistration_on_request_destroys_the_personal_data_and_keeps_the_history(registry) -> None:
    client, app = registry
    number = (await client.post("/volunteers", json=volunteer(1))).json()["volunteer_number"]
    await client.post(f"/volunteers/{number}/deregister", json={"on_request": True})
    shown = (await client.get(f"/volunteers/{number}", headers=STAFF)).json()
    assert shown["personal_data_destroyed"] is True
    assert (shown["name"], shown["id_number"], shown["phone"]) == (None, None, None)
    assert shown["age_band"] == "35_59" and shown["status"] == "deregistered"
    async with app.state.registry.events.engine.connect() as conn:
        assert (await conn.exec_driver_sql(f"SELECT count(*) FROM volunteer_keys WHERE volunteer_number = '{number}'")).scalar() == 0
    assert len((await client.get(f"/volunteers/{number}/history")).json()) == 2
    # The same person may register again, as a new volunteer.
    again = await client.post("/volunteers", json=volunteer(1))
    assert again.status_code == 201 and again.json()["volunteer_number"] != number


async def test_a_party_member_reports_in_and_a_transfer_across_districts_keeps_history_and_approver(registry, js) -> None:
    client, app = registry
    number = (await client.post("/volunteers", json=volunteer(1))).json()["volunteer_number"]
    assert (await client.post(f"/volunteers/{number}/report-in")).json()["reported_in_at"] == "370303001001"
    masses = (await client.post("/volunteers", json=volunteer(2, political_status="masses"))).json()["volunteer_number"]
    refused = await client.post(f"/volunteers/{masses}/report-in")
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "political_status"

    moved = await client.post(f"/volunteers/{number}/transfer", json={"to_community_code": "370305001001"}, headers=staff("district-admin-2"))
    assert moved.status_code == 200, moved.text
    assert moved.json()["org_path"] == ["370305", "370305001000", "370305001001"]
    assert moved.json()["reported_in_at"] == "370305001001"  # the party relationship moved with them
    history = (await client.get(f"/volunteers/{number}/history")).json()
    transfer = history[-1]
    assert transfer["type"] == "VolunteerTransferred" and transfer["actor"] == "district-admin-2"
    assert transfer["payload"]["approved_by"] == "district-admin-2"
    assert transfer["payload"]["from_org_path"] == ["370303", "370303001000", "370303001001"]
    same = await client.post(f"/volunteers/{number}/transfer", json={"to_community_code": "370305001001"})
    assert same.status_code == 422

    # The transfer is published on the new district's subject.
    await eventually(lambda: app.state.registry.events.outbox_depth(), lambda d: d == 0)
    info = await js.stream_info("REGISTRY")
    subjects = [(await js.get_msg("REGISTRY", seq)).subject for seq in range(1, info.state.last_seq + 1)]
    assert "registry.370305.volunteer.transferred" in subjects


async def test_certifications_expire_by_the_daily_job_and_search_filters_combine(registry) -> None:
    client, app = registry
    numbers = [(await client.post("/volunteers", json=volunteer(n))).json()["volunteer_number"] for n in range(1, 5)]
    today = city_today()
    await client.post(f"/volunteers/{numbers[0]}/certifications", json={"certification": "first_aid", "expires_on": (today + timedelta(days=30)).isoformat()})
    await client.post(f"/volunteers/{numbers[1]}/certifications", json={"certification": "first_aid", "granted_on": (today - timedelta(days=400)).isoformat(), "expires_on": (today - timedelta(days=1)).isoformat()})
    bad = await client.post(f"/volunteers/{numbers[2]}/certifications", json={"certification": "first_aid", "expires_on": (today - timedelta(days=1)).isoformat()})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "expires_on"
    await client.post(f"/volunteers/{numbers[2]}/verify")
    await client.post(f"/volunteers/{numbers[3]}/transfer", json={"to_community_code": "370303001002"})

    from services.registry.handlers.volunteers import expire_certifications

    assert await expire_certifications(app.state.registry, today) == 1
    assert await expire_certifications(app.state.registry, today) == 0
    assert (await client.get(f"/volunteers/{numbers[1]}/history")).json()[-1]["type"] == "CertificationExpired"

    async def found(**query: str) -> list[str]:
        page = (await client.get("/volunteers", params=query)).json()
        return [item["volunteer_number"] for item in page["items"]]

    assert await found(certification="first_aid") == [numbers[0]]
    assert await found(status="verified") == [numbers[2]]
    assert await found(org="370303001002") == [numbers[3]]
    assert await found(org="370303001000") == numbers
    assert await found(org="370300", skill="first_aid", status="pending") == [numbers[0], numbers[1], numbers[3]]
    assert await found(org="370305") == []
    first = (await client.get("/volunteers", params={"limit": 3})).json()
    assert len(first["items"]) == 3 and first["next"] == numbers[2]
    rest = (await client.get("/volunteers", params={"limit": 3, "after": first["next"]})).json()
    assert [i["volunteer_number"] for i in rest["items"]] == [numbers[3]] and rest["next"] is None
    assert first["items"][0]["id_number"] is None  # lists never carry personal data
    assert (await client.get("/volunteers", params={"org": "999999"})).status_code == 404


async def test_a_site_opens_and_closes_once_and_not_before_it_opened(registry) -> None:
    client, _ = registry
    body = {"site_id": "station-1", "org_unit_code": "370303001001", "level": "station", "kind": "community", "name": "和平站", "opened_on": "2025-03-01"}
    assert (await client.post("/sites", json=body)).status_code == 201
    assert (await client.post("/sites", json=body)).status_code == 409
    wrong = await client.post("/sites", json={**body, "site_id": "x", "org_unit_code": "370303001000"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "org_unit_code"
    early = await client.post("/sites/station-1/close", json={"closed_on": "2025-01-01", "reason": "moved"})
    assert early.status_code == 422 and early.json()["errors"][0]["field"] == "closed_on"
    assert (await client.post("/sites/station-1/close", json={"closed_on": "2026-01-01", "reason": "moved"})).status_code == 200
    assert (await client.post("/sites/station-1/close", json={"closed_on": "2026-02-01", "reason": "again"})).status_code == 200
    assert (await client.get("/sites/station-1")).json()["closed_on"] == "2026-01-01"
