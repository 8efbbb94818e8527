"""Who reaches what in dispatch (services/dispatch/api/reach.py), over a real store (SQLite and
PostgreSQL) and NATS: the rules the scope matrix (test_scope_matrix.py) does not tell apart, each
asked of someone who reaches the thing and of someone who does not. Outside is the answer for
what does not exist, word for word."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.auth import Role
from shared.envelope import utcnow
from tests.infra.auth import bearer, volunteer
from tests.infra.dispatch import Clock, dispatch_app, know_site, know_volunteer

DISTRICT, STREET, COMMUNITY = "370303", "370303001000", "370303001001"
PATH = (DISTRICT, STREET, COMMUNITY)
OTHER_PATH = ("370302", "370302001000", "370302001001")
SITE, OTHER_SITE = "ST-HEPING", "ST-DONGGUAN"
ANN, BOB, CAI = "V00000001", "V00000002", "V00000003"  # Ann lives in the community; Cai in the other district
TEAM, OTHER_TEAM = "T000001", "T000002"

STATION = bearer(Role.station_staff, COMMUNITY)
NEXT_STATION = bearer(Role.station_staff, "370303001002")
STREET_STAFF = bearer(Role.street_staff, STREET)
OTHER_DISTRICT = bearer(Role.district_admin, OTHER_PATH[0])
LEADER, OTHER_LEADER = bearer(Role.team_leader, TEAM), bearer(Role.team_leader, OTHER_TEAM)
NIGHT = datetime(2027, 2, 11, 12, 0, tzinfo=UTC)  # 20:00 in the city


@pytest.fixture
async def dispatch(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Clock]]:
    async with dispatch_app(nats_url, database_url, NIGHT - timedelta(days=2)) as running:
        app = running[1]
        await know_site(app, SITE, PATH)
        await know_site(app, OTHER_SITE, OTHER_PATH)
        for number in (ANN, BOB):
            await know_volunteer(app, number, PATH)
        await know_volunteer(app, CAI, OTHER_PATH)
        yield running


def unknown(response: httpx.Response, detail: str) -> bool:
    return response.status_code == 404 and response.json() == {
        "type": "about:blank", "title": "NotFound", "status": 404, "detail": detail,
    }  # fmt: skip


async def place(
    client: httpx.AsyncClient, headers: dict[str, str], path: tuple[str, ...] = PATH, site: str = SITE
) -> str:
    start = utcnow() + timedelta(days=1)
    body = {
        "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": path[-1], "site_id": site,
        "window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat(), "headcount": 1,
        "placed_via": "resident",
    }  # fmt: skip
    response = await client.post("/orders", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["order_id"]


async def test_an_order_is_the_residents_who_placed_it_and_the_volunteers_it_was_sent_to(dispatch) -> None:
    client, _, _ = dispatch
    order_id = await place(client, volunteer(CAI))  # a resident asks for help in another district
    deadline = (utcnow() + timedelta(hours=4)).isoformat()
    sent = await client.post(
        f"/orders/{order_id}/dispatch", json={"volunteer_numbers": [BOB], "site_id": SITE, "deadline": deadline}
    )
    assert sent.status_code == 200, sent.text

    for headers in (volunteer(CAI), volunteer(BOB), STATION, STREET_STAFF):
        assert (await client.get(f"/orders/{order_id}", headers=headers)).status_code == 200
    for headers in (volunteer(ANN), NEXT_STATION, OTHER_DISTRICT, LEADER):
        assert unknown(await client.get(f"/orders/{order_id}", headers=headers), f"unknown order {order_id}")

    # Bob was sent it: he answers for himself, but only the resident cancels or rates it.
    for_ann = await client.post(f"/orders/{order_id}/accept", json={"by": ANN}, headers=volunteer(BOB))
    assert for_ann.status_code == 422 and for_ann.json()["errors"][0]["field"] == "by"
    cancelled = await client.post(f"/orders/{order_id}/cancel", json={"reason": "not_needed"}, headers=volunteer(BOB))
    assert unknown(cancelled, f"unknown order {order_id}")
    accepted = await client.post(f"/orders/{order_id}/accept", json={"by": BOB}, headers=volunteer(BOB))
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted", accepted.text
    done = await client.post(f"/orders/{order_id}/complete", json={"people_served": 1}, headers=volunteer(BOB))
    assert done.status_code == 200, done.text
    rated = await client.post(f"/orders/{order_id}/rate", json={"rating": 5}, headers=volunteer(CAI))
    assert rated.status_code == 200 and rated.json()["rating"] == 5, rated.text


async def test_outside_its_reach_staff_cannot_place_or_move_an_order_whatever_they_send(dispatch) -> None:
    client, _, _ = dispatch
    order_id = await place(client, STATION)
    elsewhere = await client.post("/orders", json={"community_code": OTHER_PATH[-1]}, headers=STATION)
    assert elsewhere.status_code == 422  # the body is read first: it says nothing of a community
    start = utcnow() + timedelta(days=1)
    body = {
        "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": OTHER_PATH[-1], "site_id": SITE,
        "window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat(), "headcount": 1,
    }  # fmt: skip
    refused = await client.post("/orders", json=body, headers=STATION)
    assert refused.status_code == 404 and refused.json()["errors"][0]["field"] == "community_code", refused.text
    for action, sent in (("dispatch", {}), ("cancel", {"reason": "x"}), ("open", {"site_id": SITE})):
        answer = await client.post(f"/orders/{order_id}/{action}", json=sent, headers=OTHER_DISTRICT)
        assert unknown(answer, f"unknown order {order_id}"), (action, answer.text)
    assert (await client.get(f"/orders/{order_id}/audit", headers=OTHER_DISTRICT)).status_code == 404
    assert (await client.get(f"/orders/{order_id}")).json()["status"] == "placed"


async def test_an_order_open_for_taking_is_every_team_leaders_until_a_team_takes_it(dispatch) -> None:
    client, _, _ = dispatch
    order_id = await place(client, STATION)
    assert unknown(await client.get(f"/orders/{order_id}", headers=LEADER), f"unknown order {order_id}")
    assert (await client.post(f"/orders/{order_id}/open", json={"site_id": SITE})).status_code == 200
    for headers in (LEADER, OTHER_LEADER):
        assert (await client.get(f"/orders/{order_id}", headers=headers)).status_code == 200

    for_another = await client.post(f"/orders/{order_id}/take", json={"team_id": OTHER_TEAM}, headers=LEADER)
    assert for_another.status_code == 422 and for_another.json()["errors"][0]["field"] == "team_id"
    taken = await client.post(f"/orders/{order_id}/take", json={"team_id": TEAM}, headers=LEADER)
    assert taken.status_code == 200 and taken.json()["status"] == "taken", taken.text
    assert (await client.get(f"/orders/{order_id}", headers=LEADER)).status_code == 200
    assert unknown(await client.get(f"/orders/{order_id}", headers=OTHER_LEADER), f"unknown order {order_id}")


async def test_the_order_list_shows_the_communities_the_caller_reaches(dispatch) -> None:
    client, _, _ = dispatch
    here, there = await place(client, STATION), await place(client, volunteer(ANN), OTHER_PATH, OTHER_SITE)

    async def listed(headers: dict[str, str], **params: str) -> list[str]:
        answer = await client.get("/orders", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        return [o["order_id"] for o in answer.json()["items"]]

    assert await listed({}) == [here, there]  # the city admin's
    assert await listed(STATION) == await listed(STREET_STAFF) == [here]
    assert await listed(NEXT_STATION) == []
    assert await listed(OTHER_DISTRICT) == await listed(OTHER_DISTRICT, site=OTHER_SITE) == [there]
    # A filter naming what lies outside the caller's reach shows nothing, as one naming nothing.
    assert await listed(STATION, site=OTHER_SITE) == await listed(STATION, site="ST-NOWHERE") == []


async def schedule_shift(client: httpx.AsyncClient, **changes: object) -> tuple[str, str]:
    activity = {
        "site_id": SITE, "kind": "festival", "theme": "lantern_festival", "field": "civilised_traffic",
        "group_served": "public_needs", "starts_on": "2027-02-11", "ends_on": "2027-02-12", **changes,
    }  # fmt: skip
    made = await client.post("/activities", json=activity, headers=STATION)
    assert made.status_code == 201, made.text
    activity_id = made.json()["activity_id"]
    shift = {"starts_at": NIGHT.isoformat(), "ends_at": (NIGHT + timedelta(hours=2)).isoformat(), "capacity": 5}
    opened = await client.post(f"/activities/{activity_id}/shifts", json=shift, headers=STATION)
    assert opened.status_code == 201, opened.text
    return activity_id, opened.json()["shift_ids"][0]


async def test_a_shift_is_the_citys_to_see_and_its_roster_its_sites_staff_and_its_teams_leader(dispatch) -> None:
    client, _, _ = dispatch
    outside = await client.post("/activities", json={"site_id": OTHER_SITE}, headers=STATION)
    assert outside.status_code == 422  # the body is read first
    activity_id, shift_id = await schedule_shift(client, brand_team_id=TEAM)
    elsewhere = await client.post(
        "/activities",
        json={"site_id": OTHER_SITE, "kind": "festival", "theme": "lantern_festival", "field": "civilised_traffic",
              "group_served": "public_needs", "starts_on": "2027-02-11", "ends_on": "2027-02-12"},
        headers=STATION,
    )  # fmt: skip
    assert (
        elsewhere.status_code == 404 and elsewhere.json()["detail"] == f"dispatch does not know site {OTHER_SITE} (yet)"
    )

    for headers in (volunteer(CAI), OTHER_LEADER, STATION):
        assert (await client.get(f"/shifts/{shift_id}", headers=headers)).status_code == 200
        assert (await client.get(f"/activities/{activity_id}", headers=headers)).status_code == 200
    assert unknown(await client.get(f"/shifts/{shift_id}", headers=OTHER_DISTRICT), f"unknown shift {shift_id}")
    for roster in ("sign-ups", "attendance"):
        assert (await client.get(f"/shifts/{shift_id}/{roster}", headers=LEADER)).status_code == 200
        assert unknown(
            await client.get(f"/shifts/{shift_id}/{roster}", headers=OTHER_LEADER), f"unknown shift {shift_id}"
        )
    for code in ("code", "code.svg", "code.png"):
        assert (await client.get(f"/shifts/{shift_id}/{code}", headers=STATION)).status_code == 200
        assert unknown(
            await client.get(f"/shifts/{shift_id}/{code}", headers=OTHER_DISTRICT), f"unknown shift {shift_id}"
        )


async def test_a_volunteer_signs_up_withdraws_and_reads_notices_for_themselves_only(dispatch) -> None:
    client, _, _ = dispatch
    _, shift_id = await schedule_shift(client)
    for_bob = await client.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": BOB}, headers=volunteer(CAI))
    assert for_bob.status_code == 404 and for_bob.json()["errors"][0]["field"] == "volunteer_number"
    mine = await client.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": CAI}, headers=volunteer(CAI))
    assert mine.status_code == 200 and mine.json()["position"] == "confirmed", mine.text
    by_staff = await client.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": BOB}, headers=STATION)
    assert by_staff.status_code == 200, by_staff.text

    assert (await client.delete(f"/shifts/{shift_id}/sign-ups/{BOB}", headers=volunteer(CAI))).status_code == 404
    assert (await client.delete(f"/shifts/{shift_id}/sign-ups/{CAI}", headers=OTHER_DISTRICT)).status_code == 404
    assert (await client.get(f"/shifts/{shift_id}/sign-ups")).json()["confirmed"] == [
        BOB,
        CAI,
    ]  # one clock time: by number
    assert (await client.delete(f"/shifts/{shift_id}/sign-ups/{CAI}", headers=STATION)).status_code == 200

    assert (await client.get(f"/volunteers/{BOB}/notices", headers=volunteer(BOB))).status_code == 200
    assert (await client.get(f"/volunteers/{BOB}/notices", headers=STREET_STAFF)).status_code == 200
    for headers in (volunteer(CAI), OTHER_DISTRICT):
        refused = await client.get(f"/volunteers/{BOB}/notices", headers=headers)
        assert unknown(refused, f"dispatch does not know volunteer {BOB}")
        assert unknown(
            await client.get(f"/volunteers/{BOB}", headers=headers), f"dispatch does not know volunteer {BOB}"
        )


async def test_a_districts_rounding_rule_is_read_by_its_staff_and_set_by_its_administrators(dispatch) -> None:
    client, _, _ = dispatch
    rule = {"bands": [{"below_minutes": 30, "hours": "0.5"}, {"below_minutes": 60, "hours": "1"}]}
    for headers in (STREET_STAFF, STATION, bearer(Role.district_admin, DISTRICT)):
        assert (await client.get(f"/districts/{DISTRICT}/rounding-rule", headers=headers)).status_code == 200
    assert unknown(
        await client.get(f"/districts/{DISTRICT}/rounding-rule", headers=OTHER_DISTRICT), f"unknown district {DISTRICT}"
    )
    assert (
        await client.put(f"/districts/{DISTRICT}/rounding-rule", json=rule, headers=STREET_STAFF)
    ).status_code == 403
    assert unknown(
        await client.put(f"/districts/{DISTRICT}/rounding-rule", json={}, headers=OTHER_DISTRICT),
        f"unknown district {DISTRICT}",
    )
    made = await client.put(
        f"/districts/{DISTRICT}/rounding-rule", json=rule, headers=bearer(Role.district_admin, DISTRICT)
    )
    assert made.status_code == 200, made.text
