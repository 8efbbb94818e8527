"""Scope checks on what a path names: one FastAPI dependency per kind of thing, reused by every
route on it. Each answers a caller who does not reach the thing with 404 in the very words an
unknown id gets (shared/auth.py), and runs before the body is read, so that an outside caller
learns nothing from a 422 either.

Who reaches what (staff: what lies at or under their node; the city admin: everything):
- a volunteer: staff over their community, the volunteer themselves, the leader of a team they
  are a member of;
- a team: staff over its site, its leader, every volunteer (they look for a team to join);
- a volunteer named in a team's path: see `domain.teams.may_name`;
- a site, to change it: staff over it (reading one is open to every signed-in role);
- a training session: staff over its site, the leaders of that site's teams;
- an account: its holder, staff over where its scope lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import store
from services.registry.api import registry_of
from services.registry.domain import teams
from services.registry.handlers import accounts as account_handlers
from shared.auth import Actor, Role
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import AccountId, VolunteerNumber
from shared.web import CurrentActor


def org_path(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


async def volunteer_row(conn: AsyncConnection, number: str) -> dict[str, Any] | None:
    v = store.volunteers
    row = (await conn.execute(select(v).where(v.c.volunteer_number == number))).mappings().first()
    return None if row is None else dict(row)


async def reaches_volunteer(conn: AsyncConnection, actor: Actor, row: dict[str, Any]) -> bool:
    number = row["volunteer_number"]
    if actor.reaches(org_path(row["org_path"])) or actor.is_volunteer(number):
        return True
    if actor.role is not Role.team_leader:
        return False
    m = store.team_members.c
    in_team = (m.team_id == actor.scope) & (m.volunteer_number == number) & (m.state == "member")
    return await conn.scalar(select(m.volunteer_number).where(in_team)) is not None


async def volunteer_in_reach(number: str, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """The volunteer's row, if the caller reaches them."""
    async with reading(registry_of(request).events.engine) as conn:
        row = await volunteer_row(conn, number)
        if row is None or not await reaches_volunteer(conn, actor, row):
            raise NotFound(f"unknown volunteer {number}")
    return row


ReachedVolunteer = Annotated[dict[str, Any], Depends(volunteer_in_reach)]


@dataclass(frozen=True)
class TeamPlace:
    """A team and where it stands: its site's org path."""

    team_id: str
    site_id: str
    path: tuple[str, ...]


async def team_place(conn: AsyncConnection, team_id: str) -> TeamPlace | None:
    t, s = store.teams, store.sites
    row = (
        await conn.execute(
            select(t.c.site_id, s.c.path).join(s, s.c.site_id == t.c.site_id).where(t.c.team_id == team_id)
        )
    ).first()
    return None if row is None else TeamPlace(team_id, row.site_id, org_path(row.path))


async def team_in_reach(team_id: str, request: Request, actor: CurrentActor) -> TeamPlace:
    async with reading(registry_of(request).events.engine) as conn:
        place = await team_place(conn, team_id)
    if place is None or not teams.reaches_team(actor, team_id, place.path):
        raise NotFound(f"unknown team {team_id}")
    return place


ReachedTeam = Annotated[TeamPlace, Depends(team_in_reach)]


async def team_volunteer_in_reach(
    team: ReachedTeam,
    number: Annotated[VolunteerNumber, Path(description="A volunteer number.")],
    request: Request,
    actor: CurrentActor,
) -> str:
    """The volunteer a team's path names, if the caller, who reaches the team, may name them."""
    m = store.team_members.c
    async with reading(registry_of(request).events.engine) as conn:
        row = await volunteer_row(conn, number)
        rolls = (m.team_id == team.team_id) & (m.volunteer_number == number)
        on_rolls = await conn.scalar(select(m.state).where(rolls)) is not None
    if row is None or not teams.may_name(
        actor, team.team_id, team.path, number, org_path(row["org_path"]), on_rolls=on_rolls
    ):
        raise NotFound(f"unknown volunteer {number}")
    return number


TeamVolunteer = Annotated[str, Depends(team_volunteer_in_reach)]


async def site_in_reach(site_id: str, request: Request, actor: CurrentActor) -> str:
    """A site that the caller, staff, may change."""
    async with reading(registry_of(request).events.engine) as conn:
        site = await store.find_site(conn, site_id)
    if site is None or not actor.reaches(site.path):
        raise NotFound(f"unknown site {site_id}")
    return site_id


async def session_in_reach(session_id: str, request: Request, actor: CurrentActor) -> str:
    sessions, sites, t = store.training_sessions, store.sites, store.teams
    async with reading(registry_of(request).events.engine) as conn:
        found = (
            await conn.execute(
                select(sessions.c.site_id, sites.c.path)
                .join(sites, sites.c.site_id == sessions.c.site_id)
                .where(sessions.c.session_id == session_id)
            )
        ).first()
        led_here = False
        if found is not None and actor.role is Role.team_leader:
            led = select(t.c.team_id).where(t.c.team_id == actor.scope, t.c.site_id == found.site_id)
            led_here = await conn.scalar(led) is not None
    if found is None or not (actor.reaches(org_path(found.path)) or led_here):
        raise NotFound(f"unknown training session {session_id}")
    return session_id


async def account_in_reach(
    account_id: Annotated[AccountId, Path(description="An account id (AC…).")], request: Request, actor: CurrentActor
) -> str:
    """An account that the caller holds or is staff over."""
    await account_handlers.ensure_reached(registry_of(request), actor, account_id)
    return account_id


async def volunteer_number_in_reach(row: ReachedVolunteer) -> str:
    return str(row["volunteer_number"])


ReachedNumber = Annotated[str, Depends(volunteer_number_in_reach)]


async def within_reach(conn: AsyncConnection, actor: Actor, path: ColumnElement[str]) -> ColumnElement[bool]:
    """A condition on an org path column (district first, "/"-joined): what the caller reaches,
    for lists. Staff reach their node and what lies under it; the city admin everything; no
    one else anything by place (they reach things by their team or their number)."""
    if actor.role is Role.city_admin:
        return true()
    node = await store.find_org_unit(conn, actor.scope) if actor.is_staff else None
    if node is None:
        return false()
    joined = "/".join(node.path)
    return or_(path == joined, path.like(joined + "/%"))
