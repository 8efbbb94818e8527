"""The volunteers dispatch knows, from registry's events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from services.dispatch import store
from services.dispatch.api.reach import VolunteerPath, volunteer_in_reach
from shared.auth import STAFF, Role
from shared.db import reading
from shared.errors import NotFound
from shared.web import allow, problems

router = APIRouter()


@router.get(
    "/volunteers/{volunteer_number}", **allow(*STAFF, Role.volunteer), tags=["volunteers"], responses=problems(404)
)
async def get_known_volunteer(
    volunteer_number: VolunteerPath, reached: Annotated[str, Depends(volunteer_in_reach)], request: Request
) -> dict[str, object]:
    """The volunteer as dispatch knows them (from registry's events): for staff over their home
    community, and the volunteer themselves."""
    async with reading(request.app.state.runtime.engine) as conn:
        row = (
            (
                await conn.execute(
                    select(store.volunteers).where(store.volunteers.c.volunteer_number == volunteer_number)
                )
            )
            .mappings()
            .first()
        )
        certs = (
            await conn.execute(
                select(store.certifications.c.certification, store.certifications.c.expires_on).where(
                    store.certifications.c.volunteer_number == volunteer_number
                )
            )
        ).all()
    if row is None:
        raise NotFound(f"dispatch does not know volunteer {volunteer_number}")
    return {
        "volunteer_number": row["volunteer_number"],
        "community_code": row["community_code"],
        "org_path": row["org_path"].split("/"),
        "age_band": row["age_band"],
        "skills": [s for s in row["skills"].split(",") if s],
        "status": row["status"],
        "certifications": {c: (e.isoformat() if e else None) for c, e in certs},
    }
