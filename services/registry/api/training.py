"""Training sessions (岗前培训): holding one at a site, its attendance, looking it up."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from services.registry import store
from services.registry.api import PERSONAL_DATA_ROLES, registry_of
from services.registry.api.reach import session_in_reach
from services.registry.domain import identity
from services.registry.handlers import training as handlers
from shared.auth import STAFF, Role
from shared.citytime import city_today
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import SiteId, Skill, VolunteerNumber
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["training"])


SessionPath = Annotated[str, Depends(session_in_reach)]


class NewSession(BaseModel):
    site_id: SiteId
    topic: Skill = Field(description="What was taught, e.g. first_aid, traffic_guidance.")
    held_on: date = Field(description="The day it was held: today or earlier.")
    hours: float = Field(gt=0, le=24)
    trainer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = Field(
        description="Who taught it: kept by the registry, never published."
    )


class Attendance(BaseModel):
    volunteer_numbers: list[VolunteerNumber] = Field(min_length=1, max_length=1000)


@router.post("/training-sessions", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def hold_session(body: NewSession, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Record a session held at a site in the caller's part of the tree (one outside it is
    answered as an unknown one)."""
    session_id = await handlers.hold_session(registry_of(request), actor, today=city_today(), **body.model_dump())
    return {"session_id": session_id}


@router.get("/training-sessions/{session_id}", **allow(*STAFF, Role.team_leader), responses=problems(404))
async def get_session(session_id: SessionPath, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """A session and its attendees, for staff over its site and the leaders of that site's teams;
    the trainer's name is masked unless the caller's role allows."""
    sessions, attendance = store.training_sessions, store.training_attendance
    async with reading(registry_of(request).events.engine) as conn:
        row = (await conn.execute(select(sessions).where(sessions.c.session_id == session_id))).mappings().first()
        if row is None:
            raise NotFound(f"unknown training session {session_id}")
        attendees = (
            await conn.execute(
                select(attendance.c.volunteer_number)
                .where(attendance.c.session_id == session_id)
                .order_by(attendance.c.volunteer_number)
            )
        ).scalars()
        shaped = {**row, "attendees": list(attendees)}
    if actor.role not in PERSONAL_DATA_ROLES:
        shaped["trainer"] = identity.mask_name(row["trainer"])
    return shaped


@router.post("/training-sessions/{session_id}/attendance", **allow(*STAFF), responses=problems(404, 409))
async def record_attendance(session_id: SessionPath, body: Attendance, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Record who attended; those already recorded are left as they are. One unknown volunteer
    refuses the whole list, and so does one the caller neither reaches nor finds in a team of the
    session's site."""
    recorded = await handlers.record_attendance(registry_of(request), actor, session_id, body.volunteer_numbers)
    return {"session_id": session_id, "recorded": recorded}
