"""Teams: founding, lookup and listing, applications, invitations, leaving, leadership, dissolution."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import store
from services.registry.api import reach, registry_of
from services.registry.api.reach import ReachedTeam, TeamVolunteer
from services.registry.domain.org import Site
from services.registry.domain.teams import Team
from services.registry.handlers import teams as handlers
from shared.auth import STAFF, Role
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import SiteId, TeamKind, VolunteerNumber
from shared.web import Actor, CurrentActor, allow, problems

router = APIRouter(tags=["teams"])



class NewTeam(BaseModel):
    site_id: SiteId
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    kind: TeamKind = TeamKind.general
    field: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)] | None = Field(
        default=None, description="For professional teams (required there): medical, legal, ..."
    )
    description: str = Field(default="", max_length=2000)
    capacity: int = Field(ge=1, le=100_000, description="Most members the team takes, its leader included.")
    leader_number: VolunteerNumber


class Volunteer(BaseModel):
    volunteer_number: VolunteerNumber


class Dissolution(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


def _state(team: Team) -> dict[str, Any]:
    return {
        "team_id": team.team_id,
        "site_id": team.site_id,
        "leader_number": team.leader,
        "capacity": team.capacity,
        "dissolved": team.dissolved,
        "members": sorted(team.members),
        "applicants": sorted(team.applicants),
        "invited": sorted(team.invited),
    }


@router.post("/teams", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def create_team(body: NewTeam, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Found a team under an open site; its leader is its first member."""
    team_id = await handlers.create_team(registry_of(request), actor, **body.model_dump())
    return {"team_id": team_id}


async def _people(conn: AsyncConnection, team_id: str) -> dict[str, list[str]]:
    members = store.team_members
    rows = await conn.execute(
        select(members.c.state, members.c.volunteer_number)
        .where(members.c.team_id == team_id)
        .order_by(members.c.volunteer_number)
    )
    people: dict[str, list[str]] = {"members": [], "applicants": [], "invited": []}
    key = {"member": "members", "applied": "applicants", "invited": "invited"}
    for state, number in rows:
        people[key[state]].append(number)
    return people


@router.get("/teams/{team_id}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_team(team: ReachedTeam, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """A team with its members, open applications and open invitations, for staff over its site
    and its leader. Any volunteer may look at any team (to apply to it): they see how many members
    it has, and of those lists only themselves."""
    async with reading(registry_of(request).events.engine) as conn:
        row = (await conn.execute(select(store.teams).where(store.teams.c.team_id == team.team_id))).mappings().first()
        assert row is not None  # the team was found in reach just now, and teams are never deleted
        people = await _people(conn, team.team_id)
    counted = {**row, "member_count": len(people["members"])}
    if actor.role is Role.volunteer:
        return {**counted, **{key: [n for n in numbers if actor.is_volunteer(n)] for key, numbers in people.items()}}
    return {**counted, **people}


async def _lists_teams_at(conn: AsyncConnection, actor: Actor, site: Site) -> bool:
    if actor.role is Role.volunteer:
        return True
    if actor.role is Role.team_leader:
        led = await reach.team_place(conn, actor.scope)
        return led is not None and led.site_id == site.site_id
    return actor.reaches(site.path)


@router.get("/teams", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def list_teams(
    request: Request,
    actor: CurrentActor,
    site: SiteId | None = None,
    kind: TeamKind | None = None,
    dissolved: Annotated[bool, Query(description="List dissolved teams instead of active ones.")] = False,
    after: Annotated[str | None, Query(description="Cursor: the last team id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Teams, a page at a time: every team for a volunteer (they look for one to join), those of
    their part of the tree for staff, their own for a team leader. A site outside that is answered
    as one that does not exist."""
    t, m, sites = store.teams, store.team_members, store.sites
    conditions = [t.c.dissolved == dissolved]
    if kind is not None:
        conditions.append(t.c.kind == kind)
    if after is not None:
        conditions.append(t.c.team_id > after)
    size = select(func.count()).where(m.c.team_id == t.c.team_id, m.c.state == "member").scalar_subquery()
    async with reading(registry_of(request).events.engine) as conn:
        if site is not None:
            found = await store.find_site(conn, site)
            if found is None or not await _lists_teams_at(conn, actor, found):
                raise NotFound(f"unknown site {site}", field="site")
            conditions.append(t.c.site_id == site)
        if actor.role is Role.team_leader:
            conditions.append(t.c.team_id == actor.scope)
        elif actor.role is not Role.volunteer:
            conditions.append(await reach.within_reach(conn, actor, sites.c.path))
        query = (
            select(t, size.label("member_count"))
            .join(sites, sites.c.site_id == t.c.site_id)
            .where(and_(*conditions))
            .order_by(t.c.team_id)
            .limit(limit + 1)
        )
        rows = (await conn.execute(query)).mappings().all()
    page = [dict(row) for row in rows[:limit]]
    return {"items": page, "next": page[-1]["team_id"] if len(rows) > limit else None}


@router.post("/teams/{team_id}/applications", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def apply(team: ReachedTeam, body: Volunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """A volunteer applies; one the team already invited joins at once."""
    return _state(await handlers.apply(registry_of(request), actor, team.team_id, body.volunteer_number))


@router.post("/teams/{team_id}/applications/{number}/approve", **allow(*STAFF, Role.team_leader), responses=problems(404, 409))
async def approve(team: ReachedTeam, number: TeamVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.approve(registry_of(request), actor, team.team_id, number))


@router.post("/teams/{team_id}/applications/{number}/reject", **allow(*STAFF, Role.team_leader), responses=problems(404, 409))
async def reject(team: ReachedTeam, number: TeamVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.reject(registry_of(request), actor, team.team_id, number))


@router.post("/teams/{team_id}/invitations", **allow(*STAFF, Role.team_leader), responses=problems(404, 409))
async def invite(team: ReachedTeam, body: Volunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.invite(registry_of(request), actor, team.team_id, body.volunteer_number))


@router.post("/teams/{team_id}/invitations/{number}/accept", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def accept_invitation(team: ReachedTeam, number: TeamVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.accept_invitation(registry_of(request), actor, team.team_id, number))


@router.post("/teams/{team_id}/invitations/{number}/decline", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def decline_invitation(team: ReachedTeam, number: TeamVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.decline_invitation(registry_of(request), actor, team.team_id, number))


@router.post("/teams/{team_id}/members/{number}/leave", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def leave(team: ReachedTeam, number: TeamVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """A member leaves; the leader hands the team over first."""
    return _state(await handlers.leave(registry_of(request), actor, team.team_id, number))


@router.delete("/teams/{team_id}/members/{number}", **allow(*STAFF, Role.team_leader), responses=problems(404, 409))
async def remove(team: ReachedTeam, number: TeamVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """The leader removes a member."""
    return _state(await handlers.remove(registry_of(request), actor, team.team_id, number))


@router.put("/teams/{team_id}/leader", **allow(*STAFF, Role.team_leader), responses=problems(404, 409))
async def change_leader(team: ReachedTeam, body: Volunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Hand the team to one of its members."""
    return _state(await handlers.change_leader(registry_of(request), actor, team.team_id, body.volunteer_number))


@router.post("/teams/{team_id}/dissolve", **allow(*STAFF, Role.team_leader), responses=problems(404, 409))
async def dissolve(team: ReachedTeam, body: Dissolution, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.dissolve(registry_of(request), actor, team.team_id, body.reason))
