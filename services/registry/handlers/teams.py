"""Teams: founding under a site, membership by application or invitation, leadership, dissolution.

Each command loads the team, lets the domain decide and records what it decided, in one
transaction; a refusal anywhere leaves nothing written.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update

from services.registry import store
from services.registry.domain import org, teams, volunteers
from services.registry.domain.teams import Team
from services.registry.handlers import Registry, record
from shared.auth import Actor
from shared.catalog import Event
from shared.errors import Conflict, NotFound
from shared.events.common import TeamKind, VolunteerStatus
from shared.eventstore import Transaction

# Who may lead or join a team: anyone registered who is neither suspended nor gone.
_MAY_JOIN = frozenset({VolunteerStatus.pending, VolunteerStatus.verified})


async def _ensure_may_join(
    tx: Transaction, number: str, field: str, named: Callable[[tuple[str, ...]], bool] = lambda path: True
) -> None:
    """The volunteer exists where the caller may name them (`named`, given where they live; else
    they are as unknown) and may serve."""
    try:
        history = await tx.history("volunteer", number, "volunteer")
    except NotFound as unknown:
        raise NotFound(unknown.message, field=field) from None
    volunteer = volunteers.fold(history.entries)
    assert volunteer is not None
    if not named(volunteer.org_path):
        raise NotFound(f"unknown volunteer {number}", field=field)
    if volunteer.status not in _MAY_JOIN:
        raise Conflict(f"volunteer {number} is {volunteer.status}", field=field, state=str(volunteer.status))


async def create_team(
    registry: Registry, actor: Actor, *, site_id: str, name: str, kind: TeamKind, field: str | None,
    description: str, capacity: int, leader_number: str,
) -> str:
    async with registry.events.transaction() as tx:
        # Staff found teams at sites in their part of the tree, led by volunteers they reach.
        site = await store.find_site(tx.conn, site_id)
        site = org.ensure_open(site if site is not None and actor.reaches(site.path) else None, site_id)
        await _ensure_may_join(tx, leader_number, "leader_number", actor.reaches)
        team_id = await store.next_number(tx.conn, "T")
        event = teams.create(team_id, site_id, name, kind, field, capacity, leader_number)
        # Under the site's path: the team's events reach the site's district subject.
        await record(tx, team_id, 0, [event], org_path=site.path, actor=actor)
        # The description is free text for the team's page, not part of the published fact.
        await tx.conn.execute(update(store.teams).where(store.teams.c.team_id == team_id).values(description=description))
    return team_id


async def _change(
    registry: Registry, actor: Actor, team_id: str, decide: Callable[[Team], list[Event]], *, joining: str | None = None
) -> Team:
    """Load a team, check who joins it (if anyone: one the caller may name, see
    `teams.may_name`), let the domain decide, record; the new state."""
    async with registry.events.transaction() as tx:
        history = await tx.history("team", team_id, "team")
        team = teams.fold(history.payloads)
        assert team is not None
        if not teams.reaches_team(actor, team_id, history.org_path):
            raise NotFound(f"unknown team {team_id}")
        if joining is not None:
            on_rolls = joining in team.members | team.applicants | team.invited
            await _ensure_may_join(
                tx, joining, "volunteer_number",
                lambda path: teams.may_name(actor, team_id, history.org_path, joining, path, on_rolls=on_rolls),
            )  # fmt: skip
        events = decide(team)
        await record(tx, team_id, history.version, events, org_path=history.org_path, actor=actor)
    for event in events:
        team = teams.evolve(team, event)
    return team


async def apply(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.apply(t, number), joining=number)


async def approve(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    # Checked again here: the applicant may have been suspended since applying.
    return await _change(registry, actor, team_id, lambda t: teams.approve(t, number), joining=number)


async def reject(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.reject(t, number))


async def invite(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.invite(t, number), joining=number)


async def accept_invitation(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.accept_invitation(t, number), joining=number)


async def decline_invitation(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.decline_invitation(t, number))


async def leave(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.leave(t, number))


async def remove(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    """The leader removes a member."""
    return await _change(registry, actor, team_id, lambda t: teams.leave(t, number, removed=True))


async def change_leader(registry: Registry, actor: Actor, team_id: str, number: str) -> Team:
    # The team is handed only to a member who may still serve (not suspended, not gone).
    return await _change(registry, actor, team_id, lambda t: teams.change_leader(t, number), joining=number)


async def dissolve(registry: Registry, actor: Actor, team_id: str, reason: str) -> Team:
    return await _change(registry, actor, team_id, lambda t: teams.dissolve(t, reason))
