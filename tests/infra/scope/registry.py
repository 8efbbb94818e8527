"""Registry's part of the scope matrix: the org tree of two districts, a site, two volunteers, a
team and accounts in each; and registry's rules (see tests/infra/scope/__init__.py)."""

from __future__ import annotations

import time
from datetime import timedelta

from shared.auth import Role
from shared.citytime import city_today
from tests.factories import resident_id
from tests.infra.scope import (
    COMMUNITY_A,
    COMMUNITY_B,
    DISTRICT_A,
    STREET_A,
    TREE,
    Call,
    Request,
    Rules,
    World,
    client,
    created,
)
from tests.infra.served import ServedCity

EVERYONE = frozenset(Role)
VOLUNTEER = frozenset({Role.volunteer})

OPEN: Rules = {
    # The org tree and the sites on it are public knowledge to every signed-in role: volunteers
    # look for where to serve, staff for where to send them.
    ("GET", "/org-units/{code}"): {"code": EVERYONE},
    ("GET", "/sites/{site_id}"): {"site_id": EVERYONE},
    # A volunteer looks at any team in the city to join it, applies to it, and answers its
    # invitation or leaves it wherever it is; what they name in the path is only ever themselves.
    ("GET", "/teams"): {"body": VOLUNTEER},
    ("GET", "/teams/{team_id}"): {"team_id": VOLUNTEER},
    ("POST", "/teams/{team_id}/applications"): {"team_id": VOLUNTEER},
    ("POST", "/teams/{team_id}/invitations/{number}/accept"): {"team_id": VOLUNTEER},
    ("POST", "/teams/{team_id}/invitations/{number}/decline"): {"team_id": VOLUNTEER},
    ("POST", "/teams/{team_id}/members/{number}/leave"): {"team_id": VOLUNTEER},
}
PARAMETERS = {"number", "team_id", "site_id", "code", "session_id", "account_id", "aggregate_id", "certificate_number"}
CITY_WIDE: Rules = {}

_TREE_HEADER = "code,parent_code,level,name,population,party_members\n"
_VOLUNTEERS_HEADER = "name,id_number,phone,community_code\n"


def _side(world: World, inside: bool, key: str) -> str:
    return (world.inside if inside else world.outside)[key]


def _community(inside: bool) -> str:
    return COMMUNITY_A if inside else COMMUNITY_B


def _grid(inside: bool, n: int) -> str:
    return f"{_community(inside)}{n:03d}"


def _number(world: World, inside: bool) -> dict[str, str]:
    return {"volunteer_number": _side(world, inside, "number")}


def _csv(text: str) -> Call:
    return Call(content=text.encode(), headers={"content-type": "text/csv"})


# Operations whose scope rides in the body or the query. The inside calls of the creating ones
# really create (a grid, a site, a team, a session, an account, a volunteer in A): each role after
# the first is told the thing exists (409), which is past the scope check.
REQUESTS: dict[tuple[str, str], Request] = {
    ("POST", "/org-units"): Request(
        lambda world, inside: Call(
            json={
                "code": _grid(inside, 1),
                "parent_code": _community(inside),
                "level": "grid",
                "name": "网格",
                "population": 100,
                "party_members": 1,
            }
        )
    ),
    ("POST", "/org-units/import"): Request(
        lambda world, inside: _csv(f"{_TREE_HEADER}{_grid(inside, 2)},{_community(inside)},grid,网格二,100,1\n")
    ),
    ("POST", "/sites"): Request(
        lambda world, inside: Call(
            json={
                "site_id": f"ST-SCOPE-{'A' if inside else 'B'}2",
                "org_unit_code": _community(inside),
                "level": "station",
                "kind": "community",
                "name": "新站",
            }
        )
    ),
    # A row for a community outside the caller's part is refused by itself: the answer names
    # nothing of the outside (the line and the field say which).
    ("POST", "/volunteers/import"): Request(
        lambda world, inside: _csv(
            f"{_VOLUNTEERS_HEADER}赵六,{resident_id(f'37030319900101{30 if inside else 31:02d}2')},"
            f"1391234{30 if inside else 31:04d},{_community(inside)}\n"
        ),
        outside="hidden",
    ),
    # Staff list the volunteers of their part of the tree only (a filter naming an org unit
    # outside it is 404, see test_registry_scope.py).
    ("GET", "/volunteers"): Request(
        lambda world, inside: Call(params={"org": COMMUNITY_A} if inside else {}), outside="hidden"
    ),
    ("POST", "/teams"): Request(
        lambda world, inside: Call(
            json={
                "site_id": _side(world, inside, "site_id"),
                "name": "新队",
                "kind": "general",
                "capacity": 5,
                "leader_number": world.facts[f"leader_{'A' if inside else 'B'}"],
            }
        )
    ),
    # Staff list their part's teams, a leader their own, a volunteer every team (OPEN).
    ("GET", "/teams"): Request(
        lambda world, inside: Call(params={"site": world.inside["site_id"]} if inside else {}), outside="hidden"
    ),
    # A volunteer applies for themselves only; staff for volunteers they reach.
    ("POST", "/teams/{team_id}/applications"): Request(lambda world, inside: Call(json=_number(world, inside))),
    # The leader invites volunteers living under the team's site; staff those they reach.
    ("POST", "/teams/{team_id}/invitations"): Request(lambda world, inside: Call(json=_number(world, inside))),
    # Inside: the leader it has already (nothing changes); outside: a stranger to the team.
    ("PUT", "/teams/{team_id}/leader"): Request(
        lambda world, inside: Call(
            json={"volunteer_number": world.facts["leader_A"]} if inside else _number(world, inside)
        )
    ),
    ("POST", "/training-sessions"): Request(
        lambda world, inside: Call(
            json={
                "site_id": _side(world, inside, "site_id"),
                "topic": "first_aid",
                "held_on": city_today().isoformat(),
                "hours": 1,
                "trainer": "钱老师",
            }
        )
    ),
    ("POST", "/training-sessions/{session_id}/attendance"): Request(
        lambda world, inside: Call(json={"volunteer_numbers": [_side(world, inside, "number")]})
    ),
    # A certificate over the last month: the path's volunteer is its only scope.
    ("POST", "/volunteers/{number}/certificates"): Request(
        lambda world, inside: Call(json=_last_month()), outside=None
    ),
    # Staff grant accounts over scopes in their part of the tree.
    ("POST", "/accounts"): Request(
        lambda world, inside: Call(
            json={
                "username": f"scope-made-{'a' if inside else 'b'}",
                "role": Role.volunteer.value,
                "scope": _side(world, inside, "number"),
            }
        )
    ),
}


def _last_month() -> dict[str, str]:
    today = city_today()
    return {"from": (today - timedelta(days=30)).isoformat(), "to": today.isoformat()}


def _volunteer(registry, community: str, n: int) -> str:  # type: ignore[no-untyped-def]
    body = {
        "name": "王五", "id_number": resident_id(f"37030319900101{n:02d}2"), "phone": f"1391234{n:04d}",
        "community_code": community, "skills": ["elder_care", "first_aid"], "consent": True,
    }  # fmt: skip
    number = created(registry.post("/volunteers", json=body))["volunteer_number"]
    created(registry.post(f"/volunteers/{number}/verify"))
    return number


def _account(registry, username: str, role: Role, scope: str) -> str:  # type: ignore[no-untyped-def]
    body = {"username": username, "password": "correct horse battery staple", "role": role.value, "scope": scope}
    return created(registry.post("/accounts", json=body))["account_id"]


def seed(city: ServedCity, world: World) -> None:
    with client(city, "registry") as registry:
        created(registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
        for side, community in (("A", COMMUNITY_A), ("B", COMMUNITY_B)):
            site = f"ST-SCOPE-{side}"
            created(registry.post("/sites", json={
                "site_id": site, "org_unit_code": community, "level": "station", "kind": "community", "name": f"站{side}",
            }))  # fmt: skip
            leader = _volunteer(registry, community, 10 if side == "A" else 20)
            member = _volunteer(registry, community, 11 if side == "A" else 21)
            team = created(registry.post("/teams", json={
                "site_id": site, "name": f"队{side}", "kind": "general", "capacity": 20, "leader_number": leader,
            }))["team_id"]  # fmt: skip
            created(registry.post(f"/teams/{team}/applications", json={"volunteer_number": member}))
            created(registry.post(f"/teams/{team}/applications/{member}/approve"))
            session = created(registry.post("/training-sessions", json={
                "site_id": site, "topic": "first_aid", "held_on": city_today().isoformat(), "hours": 2, "trainer": "赵老师",
            }))["session_id"]  # fmt: skip
            member_account = _account(registry, f"scope-member-{side.lower()}", Role.volunteer, member)
            leader_account = _account(registry, f"scope-leader-{side.lower()}", Role.team_leader, team)
            where = world.inside if side == "A" else world.outside
            where.update(
                number=member, team_id=team, site_id=site, code=community, session_id=session,
                account_id=member_account, **{"registry:aggregate_id": member},
            )  # fmt: skip
            world.facts[f"leader_{side}"] = leader
            world.facts[f"leader_account_{side}"] = leader_account
        # A partner system's own account is the only one it reaches.
        partner_account = _account(registry, "scope-partner", Role.partner, "")
    world.inside_for[(Role.team_leader, "account_id")] = world.facts["leader_account_A"]
    world.inside_for[(Role.partner, "account_id")] = partner_account
    world.actors.update({
        Role.city_admin: ("test-admin", "370300"),
        Role.district_admin: ("scope-district-a", DISTRICT_A),
        Role.street_staff: ("scope-street-a", STREET_A),
        Role.station_staff: ("scope-station-a", COMMUNITY_A),
        Role.team_leader: (world.facts["leader_account_A"], world.inside["team_id"]),
        Role.volunteer: (world.inside["account_id"], world.inside["number"]),
        Role.partner: (partner_account, ""),
    })  # fmt: skip


def seed_late(city: ServedCity, world: World) -> None:
    """A certificate in each district, once registry has heard of the record dispatch's seed
    confirmed for its member (until then, issuing one is refused: no records)."""
    with client(city, "registry") as registry:
        for where in (world.inside, world.outside):
            path = f"/volunteers/{where['number']}/certificates"
            deadline = time.monotonic() + 30
            while (issued := registry.post(path, json=_last_month())).status_code == 409:
                assert time.monotonic() < deadline, f"registry has not heard of the records: {issued.text}"
                time.sleep(0.05)
            where["certificate_number"] = created(issued)["certificate_number"]
