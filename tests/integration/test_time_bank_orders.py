"""Registry, dispatch and points together over a real NATS (SQLite and PostgreSQL): hours an
administrator entered and the organiser confirmed reach the time bank; a volunteer sets credits
aside for a family member's order, in another district, which dispatch takes with the
reservation; served, the credits are spent; cancelled, they come back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dispatch.app import create_app as dispatch_app
from services.points.app import create_app as points_app
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from shared.auth import Role
from shared.envelope import utcnow
from shared.settings import ServiceSettings
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY
from tests.infra.auth import bearer
from tests.infra.auth import volunteer as volunteer_token
from tests.infra.city import COMMUNITY, STAFF, TREE, ok, running, verified_volunteer
from tests.infra.postgres import database
from tests.infra.waiting import eventually

STATION = "ST-HEPING"
ELSEWHERE = "370302001001"  # a community of another district of the city


@pytest.fixture(params=["sqlite", "postgresql"])
async def city(request: pytest.FixtureRequest, nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            name: await stack.enter_async_context(database(request.param, name, tmp_path, request))
            for name in ("registry", "dispatch", "points")
        }
        registry = await stack.enter_async_context(
            running(
                registry_app(
                    RegistrySettings(
                        nats_url=nats_url, database_url=urls["registry"],
                        personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
                    )
                ),
                "registry",
            )
        )  # fmt: skip
        points = await stack.enter_async_context(
            running(points_app(ServiceSettings(nats_url=nats_url, database_url=urls["points"])), "points")
        )
        dispatch = await stack.enter_async_context(
            running(dispatch_app(ServiceSettings(nats_url=nats_url, database_url=urls["dispatch"])), "dispatch")
        )
        for client in (registry, points, dispatch):
            await eventually(lambda c=client: c.get("/readyz"), lambda r: r.status_code == 200)
        yield registry, dispatch, points


def an_order(**changes: Any) -> dict[str, Any]:
    start = utcnow() + timedelta(days=1)
    return {
        "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": ELSEWHERE, "site_id": STATION,
        "window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat(), "headcount": 1,
        "description": "陪老人看病", "address": "幸福路 1 号", **changes,
    }  # fmt: skip


async def placed(dispatch: httpx.AsyncClient, reservation_id: str) -> str:
    """Place the order once dispatch has heard of the reservation (a moment after points made it)."""
    response = await eventually(
        lambda: dispatch.post("/orders", json=an_order(time_credit_reservation=reservation_id), headers=STAFF),
        lambda r: r.status_code != 422,
    )
    return (await ok(response))["order_id"]


async def test_time_credits_pay_for_a_family_members_order_spent_when_served_returned_when_cancelled(city) -> None:
    registry, dispatch, points = city
    await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
    site = {"site_id": STATION, "org_unit_code": COMMUNITY, "level": "station", "kind": "community", "name": "和平站", "opened_on": "2025-01-01"}
    await ok(await registry.post("/sites", json=site, headers=STAFF))
    volunteer, mother = await verified_volunteer(registry, 1), await verified_volunteer(registry, 2)

    # Three hours an administrator entered, confirmed by the organiser: time credits, no points.
    today = utcnow().date()
    activity = {
        "site_id": STATION, "kind": "regular", "theme": "elderly_lunch", "field": "smart_help_for_elderly",
        "group_served": "elderly", "starts_on": str(today - timedelta(days=7)), "ends_on": str(today),
    }  # fmt: skip
    activity_id = (await eventually(lambda: dispatch.post("/activities", json=activity, headers=STAFF), lambda r: r.status_code == 201)).json()["activity_id"]
    started = utcnow().replace(microsecond=0) - timedelta(days=2)
    entry = {"volunteer_number": volunteer, "activity_id": activity_id, "started_at": started.isoformat(), "ended_at": (started + timedelta(hours=3)).isoformat()}
    made = await eventually(  # once dispatch has heard of the volunteer
        lambda: dispatch.post("/service-records", json=entry, headers=STAFF), lambda r: r.status_code != 422
    )
    record_id = (await ok(made))["record_id"]
    await ok(await dispatch.post(f"/service-records/{record_id}/confirm", json={}, headers=STAFF))
    await eventually(lambda: points.get(f"/time-bank/{volunteer}"), lambda r: r.status_code == 200 and r.json()["minutes"] == 180)
    account = await ok(await points.get(f"/accounts/{volunteer}"))
    assert (account["balance"], account["hours"]) == (0, "3.00")

    # Credits set aside for the mother's order; dispatch takes the order naming them, once.
    await ok(await points.post(f"/time-bank/{volunteer}/family", json={"member_number": mother, "relation": "parent"}))
    reservation = await ok(await points.post(f"/time-bank/{volunteer}/reservations", json={"minutes": 120, "beneficiary_number": mother}))
    order_id = await placed(dispatch, reservation["reservation_id"])
    twice = await dispatch.post("/orders", json=an_order(time_credit_reservation=reservation["reservation_id"]), headers=STAFF)
    assert twice.status_code == 409 and twice.json()["state"] == "taken"
    taken = await eventually(
        lambda: points.get(f"/time-bank/reservations/{reservation['reservation_id']}"), lambda r: r.json()["order_id"] == order_id
    )
    assert taken.json()["state"] == "held"
    assert (await ok(await points.get(f"/time-bank/{volunteer}")))["minutes"] == 60

    # Served: spent for good.
    deadline = (utcnow() + timedelta(hours=1)).isoformat()
    await ok(await dispatch.post(f"/orders/{order_id}/dispatch", json={"volunteer_numbers": [volunteer], "site_id": STATION, "deadline": deadline}, headers=STAFF))
    await ok(await dispatch.post(f"/orders/{order_id}/accept", json={"by": volunteer}))
    await ok(await dispatch.post(f"/orders/{order_id}/complete", json={"people_served": 1}, headers=STAFF))
    await eventually(lambda: points.get(f"/time-bank/reservations/{reservation['reservation_id']}"), lambda r: r.json()["state"] == "spent")

    # Cancelled: the credits come back.
    second = await ok(await points.post(f"/time-bank/{volunteer}/reservations", json={"minutes": 30}))
    cancelled_order = await placed(dispatch, second["reservation_id"])
    assert (await ok(await points.get(f"/time-bank/{volunteer}")))["minutes"] == 30
    await ok(await dispatch.post(f"/orders/{cancelled_order}/cancel", json={"reason": "need_met_elsewhere"}, headers=STAFF))
    await eventually(lambda: points.get(f"/time-bank/reservations/{second['reservation_id']}"), lambda r: r.json()["state"] == "released")
    assert (await ok(await points.get(f"/time-bank/{volunteer}")))["minutes"] == 60
    # A released reservation pays for nothing more.
    again = await dispatch.post("/orders", json=an_order(time_credit_reservation=second["reservation_id"]), headers=STAFF)
    assert again.status_code == 409 and again.json()["state"] in ("taken", "released")
    # Nobody else learns of it, or could have spent it: to another volunteer, or staff of another
    # district, a reservation that is not theirs is as unknown as one that does not exist.
    for outsider in (volunteer_token("V99999999"), bearer(Role.district_admin, "370302")):
        refused = await dispatch.post("/orders", json=an_order(time_credit_reservation=second["reservation_id"]), headers=outsider)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "time_credit_reservation"
        assert "order" not in refused.json()["errors"][0]["reason"]
    unknown = await dispatch.post("/orders", json=an_order(time_credit_reservation="TR09999999"), headers=STAFF)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "time_credit_reservation"

    balance = await ok(await points.get("/ledger/trial-balance"))
    assert balance == {"balanced": True, "sums": {"points": 0, "minutes": 0}}
    statement = await ok(await points.get(f"/accounts/{volunteer}/statement", params={"unit": "minutes"}))
    assert [(e["event"], e["change"]) for e in statement["entries"]] == [
        ("ServiceCredited", 180), ("TimeCreditsReserved", -120), ("TimeCreditsReserved", -30), ("TimeCreditsReleased", 30),
    ]
