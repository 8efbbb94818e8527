"""Dispatch's part of the scope matrix: in each district, an order the member placed, dispatched
to the team and accepted by its leader; an activity the team brands at the district's site, with a
shift the member signed up for; and a confirmed service record of the member (its id in
`world.facts`, `record_A`/`record_B`, for whoever needs hours that count). And dispatch's rules
(see tests/infra/scope/__init__.py and services/dispatch/api/reach.py).

Who reaches what: staff an order through its community, an activity, shift or record through its
site, a volunteer through their home community; a volunteer the orders they placed, were sent or
accepted, their own sign-ups, notices and records; a team leader the orders sent to or taken by
their team and the rosters of the team's shifts. Every activity and shift is open to volunteers
and team leaders city-wide. A district's rounding rule is read by its staff and set by its
administrators (street and station staff are refused outright: 403)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from shared.auth import STAFF, Role
from shared.citytime import CITY_ZONE, city_date
from shared.envelope import utcnow
from tests.infra.auth import bearer
from tests.infra.scope import DISTRICT_A, DISTRICT_B, Call, Request, Rules, World, client, created
from tests.infra.served import ServedCity

# Staff below the city: the roles that have an outside at all.
LOCAL_STAFF = frozenset(STAFF) - {Role.city_admin}
SHOWN_CITY_WIDE = {Role.volunteer, Role.team_leader}

OPEN: Rules = {
    # Volunteers sign up for any shift of the city, and team leaders look for what their team
    # could serve: every activity and shift is theirs to see.
    ("GET", "/activities/{activity_id}"): {"activity_id": SHOWN_CITY_WIDE},
    ("GET", "/shifts/{shift_id}"): {"shift_id": SHOWN_CITY_WIDE},
    # A volunteer signs themselves up anywhere; staff sign anyone up for a shift they run
    # (volunteers serve across the city).
    ("POST", "/shifts/{shift_id}/sign-ups"): {"shift_id": {Role.volunteer}, "body": LOCAL_STAFF},
    # ... and so withdraw: a volunteer from any shift, staff anyone from a shift they run.
    ("DELETE", "/shifts/{shift_id}/sign-ups/{volunteer_number}"): {
        "shift_id": {Role.volunteer},
        "volunteer_number": LOCAL_STAFF,
    },
    # A volunteer places an order as a resident, for any community (their mother's, say).
    ("POST", "/orders"): {"body": {Role.volunteer}},
}
PARAMETERS = {"order_id", "activity_id", "shift_id", "record_id", "volunteer_number", "district_code", "aggregate_id"}
CITY_WIDE: Rules = {}


def _side(world: World, inside: bool) -> dict[str, str]:
    return world.inside if inside else world.outside


def _order(world: World, inside: bool) -> Call:
    where = _side(world, inside)
    start = utcnow() + timedelta(days=1)
    return Call(json={
        "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": where["code"],
        "site_id": where["site_id"], "window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat(),
        "headcount": 1, "placed_via": "resident", "description": "帮老人买菜",
    })  # fmt: skip


def _activity(world: World, inside: bool) -> Call:
    where = _side(world, inside)
    today = city_date(utcnow())
    return Call(json={
        "site_id": where["site_id"], "kind": "festival", "theme": "lantern_festival", "field": "civilised_traffic",
        "group_served": "public_needs", "starts_on": str(today - timedelta(days=1)), "ends_on": str(today + timedelta(days=30)),
        "title": "灯会交通引导", "brand_team_id": where["team_id"],
    })  # fmt: skip


def _served_yesterday() -> tuple[datetime, datetime]:
    yesterday = datetime.combine(city_date(utcnow()) - timedelta(days=1), datetime.min.time(), CITY_ZONE)
    return yesterday.replace(hour=10), yesterday.replace(hour=12)


def _entry(world: World, inside: bool) -> Call:
    """The seed's own entry of hours (the same again gives its record back)."""
    where = _side(world, inside)
    started, ended = _served_yesterday()
    return Call(json={
        "volunteer_number": where["dispatch:volunteer_number"], "activity_id": where["activity_id"],
        "started_at": started.isoformat(), "ended_at": ended.isoformat(), "content": "东门路口引导游客",
    })  # fmt: skip


def _sign_up(world: World, inside: bool) -> Call:
    return Call(json={"volunteer_number": _side(world, inside)["dispatch:volunteer_number"]})


def _scan(world: World, inside: bool) -> Call:
    return Call(json={"code": "not-a-code", "volunteer_number": _side(world, inside)["dispatch:volunteer_number"]})


def _everything(world: World, inside: bool) -> Call:
    return Call(params={})


REQUESTS: dict[tuple[str, str], Request] = {
    # Staff place orders for the communities they reach.
    ("POST", "/orders"): Request(_order),
    # Staff schedule activities at the sites they reach.
    ("POST", "/activities"): Request(_activity),
    # Staff enter hours for an activity they reach.
    ("POST", "/service-records"): Request(_entry),
    # A volunteer signs up themselves only (staff: see OPEN).
    ("POST", "/shifts/{shift_id}/sign-ups"): Request(_sign_up),
    # A volunteer scans for themselves only.
    ("POST", "/scans"): Request(_scan),
    # The lists show what the caller reaches, nothing else.
    ("GET", "/orders"): Request(_everything, "hidden"),
    ("GET", "/service-records"): Request(_everything, "hidden"),
}


def _until(probe: Callable[[], httpx.Response], ready: Callable[[httpx.Response], bool], what: str) -> httpx.Response:
    """What dispatch learns from registry's stream arrives a moment later: wait for it, a while."""
    deadline = time.monotonic() + 30
    while True:
        response = probe()
        if ready(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {response.status_code} {response.text}")
        time.sleep(0.05)


def seed(city: ServedCity, world: World) -> None:
    with client(city, "dispatch") as dispatch:
        for side, where in (("A", world.inside), ("B", world.outside)):
            member, team, site = where["number"], where["team_id"], where["site_id"]
            for number in (member, world.facts[f"leader_{side}"]):
                _until(
                    lambda n=number: dispatch.get(f"/volunteers/{n}"),
                    lambda r: r.status_code == 200 and r.json()["status"] == "verified",
                    f"dispatch knowing {number}",
                )
            member_token = bearer(Role.volunteer, member, account=where["account_id"])
            leader_token = bearer(Role.team_leader, team, account=world.facts[f"leader_account_{side}"])
            where["dispatch:volunteer_number"] = member

            order_id = created(dispatch.post("/orders", json=_order(world, side == "A").json, headers=member_token))[
                "order_id"
            ]
            deadline = (utcnow() + timedelta(hours=4)).isoformat()
            created(
                dispatch.post(
                    f"/orders/{order_id}/dispatch", json={"team_id": team, "site_id": site, "deadline": deadline}
                )
            )
            created(dispatch.post(f"/orders/{order_id}/accept", json={"by": team}, headers=leader_token))

            made = _until(
                lambda s=side: dispatch.post("/activities", json=_activity(world, s == "A").json),
                lambda r: r.status_code != 404,  # the site, from registry's stream
                f"an activity at {site}",
            )
            activity_id = created(made)["activity_id"]
            first_night = datetime.combine(city_date(utcnow()) + timedelta(days=1), datetime.min.time(), CITY_ZONE)
            shift = {
                "starts_at": first_night.replace(hour=20).isoformat(),
                "ends_at": first_night.replace(hour=22).isoformat(),
                "capacity": 10,
            }
            (shift_id,) = created(dispatch.post(f"/activities/{activity_id}/shifts", json=shift))["shift_ids"]
            created(dispatch.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": member}))

            where.update(activity_id=activity_id)
            record_id = created(dispatch.post("/service-records", json=_entry(world, side == "A").json))["record_id"]
            created(dispatch.post(f"/service-records/{record_id}/confirm", json={}))

            where.update({
                "order_id": order_id, "shift_id": shift_id, "record_id": record_id,
                "dispatch:district_code": DISTRICT_A if side == "A" else DISTRICT_B, "dispatch:aggregate_id": order_id,
            })  # fmt: skip
            world.facts.update(
                {f"record_{side}": record_id, f"activity_{side}": activity_id, f"shift_{side}": shift_id}
            )
