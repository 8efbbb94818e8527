"""Points's part of the scope matrix: in each district, the member's account with points and time
credits earned at a shift, a shop item at the district's site, a redemption, a reservation of
time credits and family members; and points's rules (see tests/infra/scope/__init__.py).

Who reaches what (services/points/api/reach.py): a volunteer their own account, time bank,
reservations and redemptions; staff a volunteer's through the volunteer's community, a shop's
items and redemptions through the site's; a district's rules and figures are its admins' (street
and station staff are refused outright: 403). The trial balance and the waiting list are the
city's one set of books: the city admin's alone (a district's figures answer per district)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from shared.auth import Role
from shared.citytime import city_date
from shared.envelope import utcnow
from tests.factories import resident_id
from tests.infra.auth import bearer
from tests.infra.scope import DISTRICT_A, DISTRICT_B, Call, Request, Rules, World, client, created
from tests.infra.served import ServedCity

# Those who reach a volunteer's account (and so unlink a family member of theirs, one each).
ACCOUNT_ROLES = (Role.city_admin, Role.district_admin, Role.street_staff, Role.station_staff, Role.volunteer)
PRICE = 2  # points: the seed's redemption and one by each role inside leave the member some

OPEN: Rules = {
    # The shop is city-wide: any volunteer (a team leader is one) may look at any site's items.
    ("GET", "/sites/{site_id}/items"): {"site_id": {Role.volunteer, Role.team_leader}},
    # The star check is what partners are for: any volunteer of the city, yes or no.
    ("GET", "/volunteers/{volunteer_number}/stars/at-least/{level}"): {"volunteer_number": {Role.partner}},
}


def _redemption(world: World, inside: bool) -> Call:
    where = world.inside if inside else world.outside
    return Call(json={"volunteer_number": where["points:volunteer_number"], "item_id": where["points:item_id"]})


REQUESTS: dict[tuple[str, str], Request] = {
    # Whose points, for which item: the volunteer and the item name the scope.
    ("POST", "/redemptions"): Request(_redemption),
}
PARAMETERS = {
    "volunteer_number", "district_code", "item_id", "redemption_id", "reservation_id", "member_number", "aggregate_id",
}  # fmt: skip
CITY_WIDE: Rules = {
    ("GET", "/star-thresholds"): "the city's star thresholds, the same for everyone",
    ("PUT", "/star-thresholds"): "the city's star thresholds",
    ("PUT", "/time-bank/limits"): "the city's yearly limit on gifts to family",
    ("GET", "/ledger/trial-balance"): "the city's one set of books (city admin only)",
    ("GET", "/ledger/waiting"): "the city's ledger's backlog (city admin only)",
}


def _until(probe: Callable[[], httpx.Response], ready: Callable[[httpx.Response], bool], what: str) -> httpx.Response:
    """What another service learns from the streams arrives a moment later: wait for it, a while."""
    deadline = time.monotonic() + 30
    while True:
        response = probe()
        if ready(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {response.status_code} {response.text}")
        time.sleep(0.05)


def _register(registry: httpx.Client, community: str, n: int) -> str:
    body = {
        "name": "赵六", "id_number": resident_id(f"37030319900101{n:02d}2"), "phone": f"1391234{n:04d}",
        "community_code": community, "skills": ["elder_care"], "consent": True,
    }  # fmt: skip
    return created(registry.post("/volunteers", json=body))["volunteer_number"]


def _earn(city: ServedCity, site: str, member: str) -> None:
    """Two hours at a shift of the site, checked in and out by the member's scans (attendance earns
    points; hours entered by an administrator earn only time credits), and confirmed."""
    dispatch_app = city.apps["dispatch"]
    now = utcnow().replace(microsecond=0)
    starts = now + timedelta(minutes=10)  # check-in opens 30 minutes before
    ends = starts + timedelta(hours=2)
    me = bearer(Role.volunteer, member, account=member)
    with client(city, "dispatch") as dispatch:
        activity = {
            "site_id": site, "kind": "regular", "theme": "elderly_lunch", "field": "smart_help_for_elderly",
            "group_served": "elderly", "starts_on": str(city_date(now)), "ends_on": str(city_date(ends)),
        }  # fmt: skip
        made = _until(lambda: dispatch.post("/activities", json=activity), lambda r: r.status_code != 422, "activity")
        activity_id = created(made)["activity_id"]
        shift = {"starts_at": starts.isoformat(), "ends_at": ends.isoformat(), "capacity": 5}
        (shift_id,) = created(dispatch.post(f"/activities/{activity_id}/shifts", json=shift))["shift_ids"]
        _until(
            lambda: dispatch.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": member}),
            lambda r: r.status_code == 200,
            "sign-up",
        )

        def scan() -> dict[str, Any]:
            code = created(dispatch.get(f"/shifts/{shift_id}/code"))["code"]
            body = {"code": code, "volunteer_number": member, "shift_id": shift_id}
            return created(dispatch.post("/scans", json=body, headers=me))

        assert scan()["result"] == "checked_in"
        real_clock = dispatch_app.state.clock
        dispatch_app.state.clock = lambda: ends + timedelta(minutes=1)  # the state of a served app is the test's
        try:
            assert scan()["minutes"] == 120
        finally:
            dispatch_app.state.clock = real_clock
        records = _until(  # dispatch draws the record up when it hears of the check-out
            lambda: dispatch.get("/service-records", params={"volunteer": member, "activity": activity_id}),
            lambda r: r.status_code == 200 and len(r.json()["items"]) == 1,
            "service record",
        )
        (record,) = records.json()["items"]
        created(dispatch.post(f"/service-records/{record['record_id']}/confirm", json={}))


def seed(city: ServedCity, world: World) -> None:
    family: dict[str, list[str]] = {}
    with client(city, "registry") as registry:
        for side, community, first in (("A", world.inside["code"], 60), ("B", world.outside["code"], 70)):
            count = len(ACCOUNT_ROLES) if side == "A" else 1
            family[side] = [_register(registry, community, first + i) for i in range(count)]
    with client(city, "points") as points:
        for side, where, district in (("A", world.inside, DISTRICT_A), ("B", world.outside, DISTRICT_B)):
            member, site = where["number"], where["site_id"]
            for number in (member, *family[side]):
                _until(lambda n=number: points.get(f"/accounts/{n}"), lambda r: r.status_code == 200, "account")
            _until(lambda s=site: points.get(f"/sites/{s}/items"), lambda r: r.status_code == 200, "site")
            _earn(city, site, member)
            _until(
                lambda m=member: points.get(f"/accounts/{m}"),
                lambda r: r.json()["balance"] >= 10 * PRICE and r.json()["time_credit_minutes"] >= 120,
                "points earned",
            )
            item = created(
                points.post(f"/sites/{site}/items", json={"name": f"大米{side}", "price_points": PRICE, "stock": 50})
            )
            body = {"volunteer_number": member, "item_id": item["item_id"]}
            redemption = created(points.post("/redemptions", json=body))
            reservation = created(points.post(f"/time-bank/{member}/reservations", json={"minutes": 30}))
            for relative in family[side]:
                created(
                    points.post(f"/time-bank/{member}/family", json={"member_number": relative, "relation": "sibling"})
                )
            where.update({
                "points:volunteer_number": member, "points:aggregate_id": member, "points:district_code": district,
                "points:item_id": item["item_id"], "points:redemption_id": redemption["redemption_id"],
                "points:reservation_id": reservation["reservation_id"], "points:member_number": family[side][0],
            })  # fmt: skip
    for role, relative in zip(ACCOUNT_ROLES, family["A"], strict=True):
        world.inside_for[(role, "points:member_number")] = relative
