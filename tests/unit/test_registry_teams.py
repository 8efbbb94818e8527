"""Teams' pure rules: founding, applications, invitations, capacity, leaving, leadership, dissolution."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from services.registry.domain import teams
from services.registry.domain.teams import Team
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

LEADER, ANN, BOB, CAT = "V00000001", "V00000002", "V00000003", "V00000004"


def founded(capacity: int = 10) -> list[Event]:
    return [teams.create("T00000001", "S-HEPING", "和平社区志愿服务队", TeamKind.general, None, capacity, LEADER)]


def team_after(*events: Event, capacity: int = 10) -> Team:
    team = teams.fold([*founded(capacity), *events])
    assert team is not None
    return team


def then(team: Team, events: Iterable[Event]) -> Team:
    for event in events:
        team = teams.evolve(team, event)
    return team


def joined(number: str, via: str = "application") -> TeamMemberJoined:
    return TeamMemberJoined(team_id="T00000001", volunteer_number=number, via=via)


def test_a_new_team_has_its_leader_as_its_only_member() -> None:
    team = team_after()
    assert team.leader == LEADER and team.members == {LEADER}
    assert not team.applicants and not team.invited and not team.dissolved
    assert team.version == 1


def test_a_professional_team_must_name_its_field() -> None:
    with pytest.raises(Invalid) as refused:
        teams.create("T00000001", "S-HEPING", "医疗队", TeamKind.professional, None, 10, LEADER)
    assert refused.value.field == "field"
    created = teams.create("T00000001", "S-HEPING", "医疗队", TeamKind.professional, "medical", 10, LEADER)
    assert isinstance(created, TeamCreated) and created.field == "medical"


def test_a_general_or_brand_project_team_needs_no_field() -> None:
    for kind in (TeamKind.general, TeamKind.brand_project):
        assert teams.create("T00000001", "S-HEPING", "队", kind, None, 10, LEADER).field is None


def test_an_application_approved_by_the_leader_makes_a_member() -> None:
    team = team_after()
    applied = teams.apply(team, ANN)
    assert applied == [TeamMemberApplied(team_id="T00000001", volunteer_number=ANN)]
    team = then(team, applied)
    assert team.applicants == {ANN}
    approved = teams.approve(team, ANN)
    assert approved == [joined(ANN, "application")]
    team = then(team, approved)
    assert team.members == {LEADER, ANN} and not team.applicants


def test_a_rejected_applicant_may_apply_again() -> None:
    team = team_after(TeamMemberApplied(team_id="T00000001", volunteer_number=ANN))
    rejected = teams.reject(team, ANN)
    assert rejected == [TeamApplicationRejected(team_id="T00000001", volunteer_number=ANN)]
    team = then(team, rejected)
    assert not team.applicants and ANN not in team.members
    assert teams.apply(team, ANN) == [TeamMemberApplied(team_id="T00000001", volunteer_number=ANN)]


def test_approving_someone_who_did_not_apply_is_refused() -> None:
    with pytest.raises(Conflict) as refused:
        teams.approve(team_after(), ANN)
    assert refused.value.details["state"] == "not_applied"


def test_an_invitation_accepted_makes_a_member() -> None:
    team = team_after()
    invited = teams.invite(team, BOB)
    assert invited == [TeamMemberInvited(team_id="T00000001", volunteer_number=BOB)]
    team = then(team, invited)
    accepted = teams.accept_invitation(team, BOB)
    assert accepted == [joined(BOB, "invitation")]
    assert then(team, accepted).members == {LEADER, BOB}


def test_a_declined_invitation_may_be_sent_again() -> None:
    team = team_after(TeamMemberInvited(team_id="T00000001", volunteer_number=BOB))
    declined = teams.decline_invitation(team, BOB)
    assert declined == [TeamInvitationDeclined(team_id="T00000001", volunteer_number=BOB)]
    team = then(team, declined)
    assert not team.invited
    assert teams.invite(team, BOB) == [TeamMemberInvited(team_id="T00000001", volunteer_number=BOB)]


def test_accepting_without_an_invitation_is_refused() -> None:
    with pytest.raises(Conflict) as refused:
        teams.accept_invitation(team_after(), BOB)
    assert refused.value.details["state"] == "not_invited"


def test_applying_to_a_team_that_invited_you_joins_it() -> None:
    team = team_after(TeamMemberInvited(team_id="T00000001", volunteer_number=BOB))
    assert teams.apply(team, BOB) == [joined(BOB, "invitation")]


def test_an_applicant_who_is_then_invited_still_waits_for_approval() -> None:
    # The invitation is recorded; the open application stays until the leader or the volunteer acts.
    team = team_after(TeamMemberApplied(team_id="T00000001", volunteer_number=ANN))
    team = then(team, teams.invite(team, ANN))
    assert team.applicants == {ANN} and team.invited == {ANN}
    assert then(team, teams.accept_invitation(team, ANN)).members == {LEADER, ANN}


@pytest.mark.parametrize(
    "repeat",
    [
        pytest.param(lambda t: teams.apply(t, ANN), id="apply-again"),
        pytest.param(lambda t: teams.apply(t, LEADER), id="member-applies"),
        pytest.param(lambda t: teams.invite(t, BOB), id="invite-again"),
        pytest.param(lambda t: teams.invite(t, LEADER), id="invite-member"),
        pytest.param(lambda t: teams.approve(t, LEADER), id="approve-member"),
        pytest.param(lambda t: teams.accept_invitation(t, LEADER), id="accept-as-member"),
        pytest.param(lambda t: teams.reject(t, CAT), id="reject-non-applicant"),
        pytest.param(lambda t: teams.decline_invitation(t, CAT), id="decline-uninvited"),
        pytest.param(lambda t: teams.leave(t, CAT), id="non-member-leaves"),
        pytest.param(lambda t: teams.change_leader(t, LEADER), id="same-leader"),
    ],
)
def test_repeating_a_command_changes_nothing(repeat) -> None:
    team = team_after(
        TeamMemberApplied(team_id="T00000001", volunteer_number=ANN),
        TeamMemberInvited(team_id="T00000001", volunteer_number=BOB),
    )
    assert repeat(team) == []


def test_a_full_team_refuses_applications_invitations_and_joining() -> None:
    team = team_after(
        TeamMemberApplied(team_id="T00000001", volunteer_number=ANN),
        TeamMemberInvited(team_id="T00000001", volunteer_number=BOB),
        capacity=2,
    )
    team = then(team, teams.approve(team, ANN))
    assert team.full
    for refused_command in (
        lambda: teams.apply(team, CAT),
        lambda: teams.invite(team, CAT),
        lambda: teams.accept_invitation(team, BOB),
    ):
        with pytest.raises(Conflict) as refused:
            refused_command()
        assert refused.value.details["state"] == "full"


def test_a_team_of_one_is_full_with_its_leader() -> None:
    team = team_after(capacity=1)
    assert team.full
    with pytest.raises(Conflict):
        teams.apply(team, ANN)


def test_approving_an_application_into_a_full_team_is_refused() -> None:
    team = team_after(
        TeamMemberApplied(team_id="T00000001", volunteer_number=ANN),
        TeamMemberApplied(team_id="T00000001", volunteer_number=BOB),
        capacity=2,
    )
    team = then(team, teams.approve(team, ANN))
    with pytest.raises(Conflict) as refused:
        teams.approve(team, BOB)
    assert refused.value.details["state"] == "full"


def test_a_member_leaving_makes_room_again() -> None:
    team = team_after(joined(ANN), capacity=2)
    assert team.full
    left = teams.leave(team, ANN)
    assert left == [TeamMemberLeft(team_id="T00000001", volunteer_number=ANN, removed=False)]
    team = then(team, left)
    assert team.members == {LEADER} and not team.full
    assert teams.apply(team, BOB) == [TeamMemberApplied(team_id="T00000001", volunteer_number=BOB)]


def test_a_member_removed_by_the_leader_is_recorded_as_removed() -> None:
    team = team_after(joined(ANN))
    assert teams.leave(team, ANN, removed=True) == [TeamMemberLeft(team_id="T00000001", volunteer_number=ANN, removed=True)]


def test_the_leader_cannot_leave_or_be_removed() -> None:
    team = team_after(joined(ANN))
    for removed in (False, True):
        with pytest.raises(Conflict) as refused:
            teams.leave(team, LEADER, removed=removed)
        assert refused.value.details["state"] == "leader"


def test_the_leader_hands_the_team_to_a_member_and_may_then_leave() -> None:
    team = team_after(joined(ANN))
    changed = teams.change_leader(team, ANN)
    assert changed == [TeamLeaderChanged(team_id="T00000001", leader_number=ANN, previous_leader_number=LEADER)]
    team = then(team, changed)
    assert team.leader == ANN and team.members == {LEADER, ANN}
    assert teams.leave(team, LEADER) == [TeamMemberLeft(team_id="T00000001", volunteer_number=LEADER, removed=False)]


@pytest.mark.parametrize("who", [BOB, CAT], ids=["invited-only", "stranger"])
def test_the_leadership_goes_only_to_a_member(who: str) -> None:
    team = team_after(TeamMemberInvited(team_id="T00000001", volunteer_number=BOB))
    with pytest.raises(Conflict) as refused:
        teams.change_leader(team, who)
    assert refused.value.details["state"] == "not_member"


def test_a_dissolved_team_has_no_members_and_refuses_every_change() -> None:
    team = team_after(joined(ANN), TeamMemberApplied(team_id="T00000001", volunteer_number=BOB))
    dissolved = teams.dissolve(team, "项目结束")
    assert dissolved == [TeamDissolved(team_id="T00000001", reason="项目结束")]
    team = then(team, dissolved)
    assert team.dissolved and not team.members and not team.applicants and not team.invited
    for command in (
        lambda: teams.apply(team, CAT),
        lambda: teams.approve(team, BOB),
        lambda: teams.reject(team, BOB),
        lambda: teams.invite(team, CAT),
        lambda: teams.accept_invitation(team, CAT),
        lambda: teams.decline_invitation(team, CAT),
        lambda: teams.leave(team, ANN),
        lambda: teams.change_leader(team, ANN),
    ):
        with pytest.raises(Conflict) as refused:
            command()
        assert refused.value.details["state"] == "dissolved"


def test_dissolving_twice_changes_nothing() -> None:
    team = team_after(TeamDissolved(team_id="T00000001", reason="项目结束"))
    assert teams.dissolve(team, "again") == []


def test_the_version_counts_every_event() -> None:
    team = team_after(
        TeamMemberApplied(team_id="T00000001", volunteer_number=ANN),
        joined(ANN),
        TeamLeaderChanged(team_id="T00000001", leader_number=ANN, previous_leader_number=LEADER),
    )
    assert team.version == 4


def test_nothing_folds_to_no_team() -> None:
    assert teams.fold([]) is None
