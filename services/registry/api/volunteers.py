"""Volunteers: registration, lookup and search, lifecycle, report-in, transfer, certifications,
insurance records."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import store
from services.registry.api import PERSONAL_DATA_ROLES, reach, registry_of
from services.registry.api.reach import ReachedNumber, ReachedVolunteer
from services.registry.domain import identity
from services.registry.domain.volunteers import Volunteer
from services.registry.handlers import volunteers as handlers
from shared.auth import STAFF, Role
from shared.citytime import city_today
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import DivisionCode, PoliticalStatus, VolunteerStatus
from shared.web import ANYONE, Actor, CurrentActor, allow, problems

router = APIRouter(tags=["volunteers"])


class NewVolunteer(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    id_number: str = Field(min_length=18, max_length=18, description="Resident ID number (GB 11643).")
    phone: str = Field(min_length=11, max_length=16, description="Mainland mobile number.")
    community_code: DivisionCode
    political_status: PoliticalStatus = PoliticalStatus.masses
    skills: list[str] = Field(default_factory=list, max_length=50, description="From the skill taxonomy.")
    tags: list[str] = Field(default_factory=list, max_length=10, description="Free tags, up to 20 characters each.")
    consent: bool = Field(description="The volunteer agrees to the use of their data; required.")


class ProfileChange(BaseModel):
    political_status: PoliticalStatus
    skills: list[str] = Field(max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=10)


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class Deregistration(BaseModel):
    on_request: bool = Field(description="The volunteer asked: their personal data is destroyed.")


class Transfer(BaseModel):
    to_community_code: DivisionCode


class Certification(BaseModel):
    certification: str = Field(min_length=1, max_length=40)
    granted_on: date | None = None
    expires_on: date | None = None


class InsuranceRecord(BaseModel):
    # A policy number or a name sent along is refused, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    insurer: str = Field(min_length=1, max_length=40, description="The insurer, as a code, e.g. picc.")
    cover: str = Field(min_length=1, max_length=40, description="The kind of policy, as a code, e.g. accident.")
    valid_from: date
    valid_until: date = Field(description="The last day covered.")


def _insurance(insurer: str, cover: str, valid_from: date, valid_until: date) -> dict[str, str]:
    return {"insurer": insurer, "cover": cover, "valid_from": valid_from.isoformat(), "valid_until": valid_until.isoformat()}


def _state(volunteer: Volunteer) -> dict[str, Any]:
    return {
        "volunteer_number": volunteer.number,
        "status": volunteer.status,
        "community_code": volunteer.community_code,
        "org_path": list(volunteer.org_path),
        "political_status": volunteer.political_status,
        "skills": list(volunteer.skills),
        "tags": list(volunteer.tags),
        "reported_in_at": volunteer.reported_in_at,
        "certifications": {k: (v.isoformat() if v else None) for k, v in sorted(volunteer.certifications.items())},
        "insurance": [_insurance(i.insurer, i.cover, i.valid_from, i.valid_until) for i in volunteer.insurance],
    }


@router.post("/volunteers", **allow(ANYONE), status_code=201, responses=problems(404, 409))
async def register(body: NewVolunteer, request: Request, actor: CurrentActor) -> dict[str, str]:
    number = await handlers.register(registry_of(request), actor, today=city_today(), **body.model_dump())
    return {"volunteer_number": number, "status": "pending"}


async def _shape(request: Request, conn: AsyncConnection, row: dict[str, Any], actor: Actor, *, clear: bool) -> dict[str, Any]:
    number = row["volunteer_number"]
    skills = list((await conn.execute(select(store.volunteer_skills.c.skill).where(store.volunteer_skills.c.volunteer_number == number).order_by(store.volunteer_skills.c.skill))).scalars())
    shaped = {
        "volunteer_number": number,
        "status": row["status"],
        "community_code": row["community_code"],
        "org_path": row["org_path"].split("/"),
        "political_status": row["political_status"],
        "age_band": row["age_band"],
        "gender": row["gender"],
        "skills": skills,
        "tags": [t for t in row["tags"].split("|") if t],
        "reported_in_at": row["reported_in_at"],
        "registered_at": row["registered_at"],
        "consented_at": row["consented_at"],
        "name": None,
        "id_number": None,
        "phone": None,
        "personal_data_destroyed": row["personal_data_destroyed"],
    }
    if clear and not row["personal_data_destroyed"]:
        personal = await handlers.personal_data(registry_of(request), number)
        if personal:
            if actor.role in PERSONAL_DATA_ROLES:
                shaped.update(personal)
            else:
                shaped.update(
                    name=identity.mask_name(personal["name"]),
                    id_number=identity.mask_id_number(personal["id_number"]),
                    phone=identity.mask_phone(personal["phone"]),
                )
    return shaped


@router.get("/volunteers/{number}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_volunteer(row: ReachedVolunteer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """A volunteer, for staff over their community, themselves and the leaders of their teams;
    name, ID number and phone are masked unless the caller's role allows."""
    number = row["volunteer_number"]
    async with reading(registry_of(request).events.engine) as conn:
        shaped = await _shape(request, conn, row, actor, clear=True)
        i = store.insurance
        held = await conn.execute(
            select(i.c.insurer, i.c.cover, i.c.valid_from, i.c.valid_until)
            .where(i.c.volunteer_number == number)
            .order_by(i.c.valid_from, i.c.insurer, i.c.cover)
        )
        shaped["insurance"] = [_insurance(*row) for row in held]
    return shaped


@router.get("/volunteers/{number}/history", **allow(*STAFF, Role.volunteer), responses=problems(404))
async def history(row: ReachedVolunteer, request: Request) -> list[dict[str, Any]]:
    """Everything that happened to a volunteer, with who did it: transfers keep their approver.
    For staff over them and the volunteer themselves."""
    number = row["volunteer_number"]
    envelopes = await registry_of(request).events.load("volunteer", number)
    if not envelopes:
        raise NotFound(f"unknown volunteer {number}")
    return [
        {"type": e.type, "version": e.aggregate_version, "occurred_at": e.occurred_at, "actor": e.actor, "org_path": list(e.org_path), "payload": e.payload}
        for e in envelopes
    ]


@router.get("/volunteers", **allow(*STAFF), responses=problems(404))
async def search(
    request: Request,
    actor: CurrentActor,
    org: Annotated[DivisionCode | None, Query(description="Anywhere under this node of the org tree.")] = None,
    site: Annotated[str | None, Query(description="Members of the teams of this site.")] = None,
    team: str | None = None,
    skill: str | None = None,
    status: VolunteerStatus | None = None,
    political_status: PoliticalStatus | None = None,
    certification: Annotated[str | None, Query(description="Holds it, unexpired today.")] = None,
    after: Annotated[str | None, Query(description="Cursor: the last volunteer number of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Volunteers that the caller, staff, reaches, a page at a time; a filter naming an org unit,
    site or team outside their part of the tree is answered as one that does not exist."""
    v = store.volunteers
    async with reading(registry_of(request).events.engine) as conn:
        conditions = [await reach.within_reach(conn, actor, v.c.org_path)]
        if org is not None:
            node = await store.find_org_unit(conn, org)
            if node is None or not actor.reaches(node.path):
                raise NotFound(f"unknown org unit {org}", field="org")
            if node.level == "city":
                districts = select(store.org_units.c.code).where(store.org_units.c.parent_code == org)
                conditions.append(func.substr(v.c.org_path, 1, 6).in_(districts))
            else:
                joined = "/".join(node.path)
                conditions.append(or_(v.c.org_path == joined, v.c.org_path.like(joined + "/%")))
        if site is not None:
            found = await store.find_site(conn, site)
            if found is None or not actor.reaches(found.path):
                raise NotFound(f"unknown site {site}", field="site")
        if team is not None:
            place = await reach.team_place(conn, team)
            if place is None or not actor.reaches(place.path):
                raise NotFound(f"unknown team {team}", field="team")
        members = store.team_members
        if team is not None:
            conditions.append(exists().where(members.c.volunteer_number == v.c.volunteer_number, members.c.team_id == team, members.c.state == "member"))
        if site is not None:
            site_teams = select(store.teams.c.team_id).where(store.teams.c.site_id == site)
            conditions.append(exists().where(members.c.volunteer_number == v.c.volunteer_number, members.c.team_id.in_(site_teams), members.c.state == "member"))
        if skill is not None:
            skills = store.volunteer_skills
            conditions.append(exists().where(skills.c.volunteer_number == v.c.volunteer_number, skills.c.skill == skill))
        if certification is not None:
            certs = store.certifications
            conditions.append(
                exists().where(
                    certs.c.volunteer_number == v.c.volunteer_number,
                    certs.c.certification == certification,
                    or_(certs.c.expires_on.is_(None), certs.c.expires_on > city_today()),
                )
            )
        if status is not None:
            conditions.append(v.c.status == status)
        if political_status is not None:
            conditions.append(v.c.political_status == political_status)
        if after is not None:
            conditions.append(v.c.volunteer_number > after)
        rows = (await conn.execute(select(v).where(and_(True, *conditions)).order_by(v.c.volunteer_number).limit(limit + 1))).mappings().all()
        page = [await _shape(request, conn, dict(r), actor, clear=False) for r in rows[:limit]]
    return {"items": page, "next": page[-1]["volunteer_number"] if len(rows) > limit else None}


@router.post("/volunteers/{number}/verify", **allow(*STAFF), responses=problems(404, 409))
async def verify(number: ReachedNumber, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.verify(registry_of(request), actor, number))


@router.post("/volunteers/{number}/suspend", **allow(*STAFF), responses=problems(404, 409))
async def suspend(number: ReachedNumber, body: Reason, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.suspend(registry_of(request), actor, number, body.reason))


@router.post("/volunteers/{number}/reactivate", **allow(*STAFF), responses=problems(404, 409))
async def reactivate(number: ReachedNumber, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.reactivate(registry_of(request), actor, number))


@router.post("/volunteers/{number}/deregister", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def deregister(number: ReachedNumber, body: Deregistration, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.deregister(registry_of(request), actor, number, on_request=body.on_request))


@router.put("/volunteers/{number}/profile", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def update_profile(number: ReachedNumber, body: ProfileChange, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.update_profile(registry_of(request), actor, number, body.political_status, body.skills, body.tags))


@router.post("/volunteers/{number}/report-in", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def report_in(number: ReachedNumber, request: Request, actor: CurrentActor) -> dict[str, Any]:
    return _state(await handlers.report_in(registry_of(request), actor, number))


@router.post("/volunteers/{number}/transfer", **allow(*STAFF), responses=problems(404, 409))
async def transfer(number: ReachedNumber, body: Transfer, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Move the volunteer to another community (关系转接), also across districts; the caller approves."""
    return _state(await handlers.transfer(registry_of(request), actor, number, body.to_community_code))


@router.post("/volunteers/{number}/certifications", **allow(*STAFF), responses=problems(404, 409))
async def certify(number: ReachedNumber, body: Certification, request: Request, actor: CurrentActor) -> dict[str, Any]:
    granted_on = body.granted_on or city_today()
    return _state(await handlers.grant_certification(registry_of(request), actor, number, body.certification, granted_on, body.expires_on))


@router.post("/volunteers/{number}/insurance", **allow(*STAFF), responses=problems(404, 409))
async def record_insurance(number: ReachedNumber, body: InsuranceRecord, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Record the volunteer's insurance, which risky work requires: insurer and kind of cover as
    codes, and the days covered. Keep the policy number and names out: they are not taken."""
    volunteer = await handlers.record_insurance(registry_of(request), actor, number, **body.model_dump())
    return _state(volunteer)
