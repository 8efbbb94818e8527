"""Registry's query tables follow from its own events, in the same transaction that records them.

Personal data is not in events: the registration handler seals it into the volunteer's row.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import store
from shared.catalog import Event, catalog
from shared.db import upsert
from shared.envelope import EventEnvelope
from shared.events import registry as ev


async def project(conn: AsyncConnection, envelopes: Sequence[EventEnvelope]) -> None:
    for envelope in envelopes:
        await _project(conn, envelope, catalog.payload_of(envelope))


async def _set_volunteer(conn: AsyncConnection, number: str, **values: object) -> None:
    await conn.execute(update(store.volunteers).where(store.volunteers.c.volunteer_number == number).values(**values))


async def _set_skills(conn: AsyncConnection, number: str, skills: Sequence[str]) -> None:
    table = store.volunteer_skills
    await conn.execute(delete(table).where(table.c.volunteer_number == number))
    if skills:
        await conn.execute(table.insert(), [{"volunteer_number": number, "skill": s} for s in skills])


async def _membership(conn: AsyncConnection, team_id: str, number: str, state: str | None) -> None:
    table = store.team_members
    if state is None:
        await conn.execute(delete(table).where(table.c.team_id == team_id, table.c.volunteer_number == number))
        return
    statement = upsert(conn, table).values(team_id=team_id, volunteer_number=number, state=state)
    await conn.execute(statement.on_conflict_do_update(index_elements=["team_id", "volunteer_number"], set_={"state": state}))


async def _project(conn: AsyncConnection, envelope: EventEnvelope, event: Event) -> None:
    path = "/".join(envelope.org_path)
    match event:
        case ev.OrgUnitCreated():
            await conn.execute(
                store.org_units.insert().values(
                    code=event.code, parent_code=event.parent_code, level=event.level, name=event.name,
                    population=event.population, party_members=event.party_members, path=path,
                )
            )
        case ev.SiteOpened():
            await conn.execute(
                store.sites.insert().values(
                    site_id=event.site_id, org_unit_code=event.org_unit_code, path=path, level=event.level,
                    kind=event.kind, name=event.name, opened_on=event.opened_on,
                )
            )
        case ev.SiteClosed():
            await conn.execute(update(store.sites).where(store.sites.c.site_id == event.site_id).values(closed_on=event.closed_on))
        case ev.VolunteerRegistered():
            # The row itself (with the sealed personal data) is written by the registration.
            await _set_volunteer(conn, event.volunteer_number, tags="|".join(event.tags))
            await _set_skills(conn, event.volunteer_number, event.skills)
        case ev.VolunteerVerified() | ev.VolunteerReactivated():
            await _set_volunteer(conn, event.volunteer_number, status="verified")
        case ev.VolunteerSuspended():
            await _set_volunteer(conn, event.volunteer_number, status="suspended")
        case ev.VolunteerDeregistered():
            await _set_volunteer(conn, event.volunteer_number, status="deregistered")
        case ev.VolunteerProfileUpdated():
            await _set_volunteer(conn, event.volunteer_number, political_status=event.political_status, tags="|".join(event.tags))
            await _set_skills(conn, event.volunteer_number, event.skills)
        case ev.PartyMemberReportedIn():
            await _set_volunteer(conn, event.volunteer_number, reported_in_at=event.community_code)
        case ev.VolunteerTransferred():
            values: dict[str, object] = {"community_code": event.to_community_code, "org_path": path}
            reported = store.volunteers.c.reported_in_at
            await _set_volunteer(conn, event.volunteer_number, **values)
            await conn.execute(
                update(store.volunteers)
                .where(store.volunteers.c.volunteer_number == event.volunteer_number, reported.is_not(None))
                .values(reported_in_at=event.to_community_code)
            )
        case ev.CertificationGranted():
            statement = upsert(conn, store.certifications).values(
                volunteer_number=event.volunteer_number, certification=event.certification,
                granted_on=event.granted_on, expires_on=event.expires_on,
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["volunteer_number", "certification"],
                    set_={"granted_on": event.granted_on, "expires_on": event.expires_on},
                )
            )
        case ev.CertificationExpired():
            table = store.certifications
            await conn.execute(
                delete(table).where(table.c.volunteer_number == event.volunteer_number, table.c.certification == event.certification)
            )
        case ev.VolunteerInsured():
            statement = upsert(conn, store.insurance).values(
                volunteer_number=event.volunteer_number, insurer=event.insurer, cover=event.cover,
                valid_from=event.valid_from, valid_until=event.valid_until,
            )
            await conn.execute(statement.on_conflict_do_nothing())
        case ev.TeamCreated():
            await conn.execute(
                store.teams.insert().values(
                    team_id=event.team_id, site_id=event.site_id, name=event.name, kind=event.kind, field=event.field,
                    capacity=event.capacity, leader_number=event.leader_number, dissolved=False,
                )
            )
            await _membership(conn, event.team_id, event.leader_number, "member")
        case ev.TeamMemberApplied():
            await _membership(conn, event.team_id, event.volunteer_number, "applied")
        case ev.TeamMemberInvited():
            await _membership(conn, event.team_id, event.volunteer_number, "invited")
        case ev.TeamMemberJoined():
            await _membership(conn, event.team_id, event.volunteer_number, "member")
        case ev.TeamApplicationRejected() | ev.TeamInvitationDeclined() | ev.TeamMemberLeft():
            await _membership(conn, event.team_id, event.volunteer_number, None)
        case ev.TeamLeaderChanged():
            await conn.execute(update(store.teams).where(store.teams.c.team_id == event.team_id).values(leader_number=event.leader_number))
        case ev.TeamDissolved():
            await conn.execute(update(store.teams).where(store.teams.c.team_id == event.team_id).values(dissolved=True))
            await conn.execute(delete(store.team_members).where(store.team_members.c.team_id == event.team_id))
        case ev.TrainingAttended():
            await conn.execute(store.training_attendance.insert().values(session_id=event.session_id, volunteer_number=event.volunteer_number))
        case ev.TrainingSessionHeld():
            pass  # the row, with the trainer's name, is written by the handler
        case ev.AccountRoleChanged():
            # The account's row (username, password hash) is written by the opening.
            await conn.execute(
                update(store.accounts)
                .where(store.accounts.c.account_id == event.account_id)
                .values(role=event.role, scope=event.scope, org_path=path)
            )
        case ev.AccountClosed():
            # The username is released: its holder may sign up with it again.
            await conn.execute(
                update(store.accounts)
                .where(store.accounts.c.account_id == event.account_id)
                .values(state="closed", username_index=None)
            )
