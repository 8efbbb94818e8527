"""Teams under a practice site: founding, membership by application or invitation, leadership.

A team's state is folded from its events; each command returns the events it decides, none when
it changes nothing (a repeated command is harmless), or raises a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from shared.auth import Actor, Role
from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.common import TeamKind
from shared.events.registry import (
    TeamApplicationRejected,
    TeamCreated,
    TeamDissolved,
    TeamInvitationDeclined,
    TeamLeaderChanged,
    TeamMemberApplied,
    TeamMemberInvited,
    TeamMemberJoined,
    TeamMemberLeft,
)


@dataclass(frozen=True)
class Team:
    team_id: str
    site_id: str
    leader: str
    capacity: int
    members: frozenset[str]
    applicants: frozenset[str] = frozenset()
    invited: frozenset[str] = frozenset()
    dissolved: bool = False
    version: int = 0

    @property
    def full(self) -> bool:
        return len(self.members) >= self.capacity


def fold(history: Iterable[Event]) -> Team | None:
    team: Team | None = None
    for event in history:
        team = evolve(team, event)
    return team


def evolve(team: Team | None, event: Event) -> Team:
    if isinstance(event, TeamCreated):
        return Team(event.team_id, event.site_id, event.leader_number, event.capacity, frozenset({event.leader_number}), version=1)
    assert team is not None, f"{type(event).__name__} before the team was created"
    team = replace(team, version=team.version + 1)
    match event:
        case TeamMemberApplied():
            return replace(team, applicants=team.applicants | {event.volunteer_number})
        case TeamApplicationRejected():
            return replace(team, applicants=team.applicants - {event.volunteer_number})
        case TeamMemberInvited():
            return replace(team, invited=team.invited | {event.volunteer_number})
        case TeamInvitationDeclined():
            return replace(team, invited=team.invited - {event.volunteer_number})
        case TeamMemberJoined():
            who = {event.volunteer_number}
            return replace(team, members=team.members | who, applicants=team.applicants - who, invited=team.invited - who)
        case TeamMemberLeft():
            return replace(team, members=team.members - {event.volunteer_number})
        case TeamLeaderChanged():
            return replace(team, leader=event.leader_number)
        case TeamDissolved():
            return replace(team, dissolved=True, members=frozenset(), applicants=frozenset(), invited=frozenset())
    return team


def reaches_team(actor: Actor, team_id: str, site_path: Sequence[str]) -> bool:
    """Staff over the team's site, its leader, and every volunteer: a volunteer looks for a team to
    join anywhere in the city."""
    return actor.reaches(site_path) or actor.leads(team_id) or actor.role is Role.volunteer


def may_name(
    actor: Actor, team_id: str, site_path: Sequence[str], number: str, volunteer_path: Sequence[str], *, on_rolls: bool
) -> bool:
    """Whether a caller who reaches the team may name this volunteer in one of its commands: a
    volunteer only themselves; staff over the team anyone on its rolls (member, applicant,
    invited: they may come from anywhere) and anyone they reach; the leader anyone on its rolls
    and anyone living under the team's site, whom they recruit."""
    if actor.role is Role.volunteer:
        return actor.is_volunteer(number)
    if on_rolls or actor.reaches(volunteer_path):
        return True
    return actor.leads(team_id) and tuple(volunteer_path[: len(site_path)]) == tuple(site_path)


def create(team_id: str, site_id: str, name: str, kind: TeamKind, field: str | None, capacity: int, leader: str) -> TeamCreated:
    if kind is TeamKind.professional and not field:
        raise Invalid("a professional team names its field (medical, legal, ...)", field="field")
    return TeamCreated(team_id=team_id, site_id=site_id, name=name, kind=kind, field=field, capacity=capacity, leader_number=leader)


def _active(team: Team) -> None:
    if team.dissolved:
        raise Conflict(f"team {team.team_id} is dissolved", state="dissolved")


def _room_for_one(team: Team) -> None:
    if team.full:
        raise Conflict(f"team {team.team_id} is full ({team.capacity} members)", state="full")


def apply(team: Team, volunteer: str) -> list[Event]:
    _active(team)
    if volunteer in team.members or volunteer in team.applicants:
        return []
    if volunteer in team.invited:  # applying to a team that invited you is accepting
        return accept_invitation(team, volunteer)
    _room_for_one(team)
    return [TeamMemberApplied(team_id=team.team_id, volunteer_number=volunteer)]


def approve(team: Team, volunteer: str) -> list[Event]:
    _active(team)
    if volunteer in team.members:
        return []
    if volunteer not in team.applicants:
        raise Conflict(f"{volunteer} has not applied to team {team.team_id}", state="not_applied")
    _room_for_one(team)
    return [TeamMemberJoined(team_id=team.team_id, volunteer_number=volunteer, via="application")]


def reject(team: Team, volunteer: str) -> list[Event]:
    _active(team)
    if volunteer not in team.applicants:
        return []
    return [TeamApplicationRejected(team_id=team.team_id, volunteer_number=volunteer)]


def invite(team: Team, volunteer: str) -> list[Event]:
    _active(team)
    if volunteer in team.members or volunteer in team.invited:
        return []
    _room_for_one(team)
    return [TeamMemberInvited(team_id=team.team_id, volunteer_number=volunteer)]


def accept_invitation(team: Team, volunteer: str) -> list[Event]:
    _active(team)
    if volunteer in team.members:
        return []
    if volunteer not in team.invited:
        raise Conflict(f"{volunteer} has no invitation from team {team.team_id}", state="not_invited")
    _room_for_one(team)
    return [TeamMemberJoined(team_id=team.team_id, volunteer_number=volunteer, via="invitation")]


def decline_invitation(team: Team, volunteer: str) -> list[Event]:
    _active(team)
    if volunteer not in team.invited:
        return []
    return [TeamInvitationDeclined(team_id=team.team_id, volunteer_number=volunteer)]


def leave(team: Team, volunteer: str, removed: bool = False) -> list[Event]:
    _active(team)
    if volunteer not in team.members:
        return []
    if volunteer == team.leader:
        raise Conflict("the leader cannot leave: hand the team to another member first", state="leader")
    return [TeamMemberLeft(team_id=team.team_id, volunteer_number=volunteer, removed=removed)]


def change_leader(team: Team, new_leader: str) -> list[Event]:
    _active(team)
    if new_leader == team.leader:
        return []
    if new_leader not in team.members:
        raise Conflict(f"{new_leader} is not a member of team {team.team_id}", state="not_member")
    return [TeamLeaderChanged(team_id=team.team_id, leader_number=new_leader, previous_leader_number=team.leader)]


def dissolve(team: Team, reason: str) -> list[Event]:
    if team.dissolved:
        return []
    return [TeamDissolved(team_id=team.team_id, reason=reason)]
