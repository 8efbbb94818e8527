"""Registry's HTTP routes: parse, call a handler, shape the response."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.registry import domain, handlers, store
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import DivisionCode, OrgLevel, PoliticalStatus, SiteLevel
from shared.eventstore import EventStore
from shared.web import CurrentActor

router = APIRouter()


def _events(request: Request) -> EventStore:
    return request.app.state.runtime.store


class NewOrgUnit(BaseModel):
    code: DivisionCode
    level: OrgLevel
    name: str = Field(min_length=1, max_length=100)
    population: int = Field(ge=0)
    party_members: int = Field(ge=0)
    parent_code: DivisionCode | None = None


class NewSite(BaseModel):
    site_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    org_unit_code: DivisionCode
    level: SiteLevel
    kind: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=100)


class NewVolunteer(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    id_number: str = Field(min_length=18, max_length=18, description="Resident ID number (GB 11643).")
    phone: str = Field(min_length=11, max_length=14)
    community_code: DivisionCode
    political_status: PoliticalStatus = PoliticalStatus.masses
    skills: list[str] = Field(default_factory=list, max_length=50)


@router.post("/org-units", status_code=201, tags=["org tree"])
async def create_org_unit(body: NewOrgUnit, request: Request, actor: CurrentActor) -> dict[str, object]:
    path = await handlers.create_org_unit(_events(request), actor, **body.model_dump())
    return {"code": body.code, "org_path": list(path)}


@router.get("/org-units/{code}", tags=["org tree"])
async def get_org_unit(code: str, request: Request) -> dict[str, object]:
    async with reading(_events(request).engine) as conn:
        row = (await conn.execute(select(store.org_units).where(store.org_units.c.code == code))).mappings().first()
    if row is None:
        raise NotFound(f"unknown org unit {code}")
    return {**row, "path": row["path"].split("/")}


@router.post("/sites", status_code=201, tags=["sites"])
async def open_site(body: NewSite, request: Request, actor: CurrentActor) -> dict[str, str]:
    await handlers.open_site(_events(request), actor, **body.model_dump())
    return {"site_id": body.site_id}


@router.post("/volunteers", status_code=201, tags=["volunteers"])
async def register_volunteer(body: NewVolunteer, request: Request, actor: CurrentActor) -> dict[str, str]:
    number = await handlers.register_volunteer(_events(request), actor, today=date.today(), **body.model_dump())
    return {"volunteer_number": number, "status": "pending"}


@router.get("/volunteers/{number}", tags=["volunteers"])
async def get_volunteer(number: str, request: Request) -> dict[str, object]:
    async with reading(_events(request).engine) as conn:
        row = (await conn.execute(select(store.volunteers).where(store.volunteers.c.volunteer_number == number))).mappings().first()
    if row is None:
        raise NotFound(f"unknown volunteer {number}")
    return {
        "volunteer_number": row["volunteer_number"],
        "name": row["name"][0] + "*" * (len(row["name"]) - 1),
        "id_number": domain.mask_id_number(row["id_number"]),
        "phone": domain.mask_phone(row["phone"]),
        "community_code": row["community_code"],
        "political_status": row["political_status"],
        "skills": [s for s in row["skills"].split(",") if s],
        "status": row["status"],
    }
