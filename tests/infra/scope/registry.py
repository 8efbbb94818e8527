"""Registry's part of the scope matrix: the org tree of two districts, a site, two volunteers, a
team and accounts in each; and registry's rules (see tests/infra/scope/__init__.py)."""

from __future__ import annotations

from datetime import date

from shared.auth import Role
from tests.factories import resident_id
from tests.infra.scope import (
    COMMUNITY_A,
    COMMUNITY_B,
    DISTRICT_A,
    STREET_A,
    TREE,
    Request,
    Rules,
    World,
    client,
    created,
)
from tests.infra.served import ServedCity

EVERYONE = frozenset(Role)

OPEN: Rules = {}
REQUESTS: dict[tuple[str, str], Request] = {}
PARAMETERS = {"number", "team_id", "site_id", "code", "session_id", "account_id", "aggregate_id"}
CITY_WIDE: Rules = {}


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
                "site_id": site, "topic": "first_aid", "held_on": date.today().isoformat(), "hours": 2, "trainer": "赵老师",
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
    world.inside_for[(Role.team_leader, "account_id")] = world.facts["leader_account_A"]
    world.actors.update({
        Role.city_admin: ("test-admin", "370300"),
        Role.district_admin: ("scope-district-a", DISTRICT_A),
        Role.street_staff: ("scope-street-a", STREET_A),
        Role.station_staff: ("scope-station-a", COMMUNITY_A),
        Role.team_leader: (world.facts["leader_account_A"], world.inside["team_id"]),
        Role.volunteer: (world.inside["account_id"], world.inside["number"]),
        Role.partner: ("scope-partner", ""),
    })  # fmt: skip
