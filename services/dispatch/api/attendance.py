"""Attendance: the shift's current code (as data; the images and pages are in pages.py), the scan
that checks in or out, and who was there."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.dispatch import store
from services.dispatch.api import events_of, iso, now_of
from services.dispatch.api.reach import ShiftPath, shift_in_reach, shift_roster_in_reach
from services.dispatch.attendance import ShiftCodes
from services.dispatch.handlers import attendance as handlers
from shared.auth import STAFF, Role
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import VolunteerNumber
from shared.events.dispatch import ShiftId
from shared.ratelimit import RateLimit
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["attendance"])
# A volunteer scans twice a shift (more when a code is refused and they try again); a phone or a
# script that keeps scanning is stopped here.
CHECK_IN = RateLimit("check-in", per_minute=30, burst=20)


# The shift in the path, if the caller reaches it (see reach.py): staff over its site; for the
# roster, also the leader of its team.
Shift = Annotated[dict[str, Any], Depends(shift_in_reach)]
Roster = Annotated[dict[str, Any], Depends(shift_roster_in_reach)]


class Scan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=200, description="The code read from the shift's QR code.")
    volunteer_number: VolunteerNumber
    shift_id: ShiftId | None = Field(default=None, description="The shift the volunteer's page has open, if any.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="The phone's position, for a geofenced shift.")
    lon: float | None = Field(default=None, ge=-180, le=180)


def shift_codes(request: Request) -> ShiftCodes:
    return request.app.state.shift_codes


def check_in_url(request: Request, code: str) -> str:
    """The URL the QR code carries: the phone's camera opens the check-in page with it."""
    base = request.app.state.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/check-in?code={code}"


def current_code(request: Request, shift_id: str, now: datetime) -> dict[str, Any]:
    codes = shift_codes(request)
    code = codes.code_for(shift_id, now)
    return {
        "shift_id": shift_id,
        "code": code,
        "url": check_in_url(request, code),
        "period_seconds": int(codes.period.total_seconds()),
        "valid_until": codes.valid_until(now).isoformat(),
    }


@router.get("/shifts/{shift_id}/code", **allow(*STAFF), responses=problems(404))
async def get_code(shift_id: ShiftPath, row: Shift, request: Request) -> dict[str, Any]:
    """The shift's code now, and the check-in URL to show as a QR code; it rotates every period."""
    return current_code(request, shift_id, now_of(request))


@router.post("/scans", **allow(Role.volunteer, limited_by=CHECK_IN), responses=problems(404, 409))
async def scan(body: Scan, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """A scan of a shift's code: the first checks in, the next (a minute on) checks out, a repeat
    changes nothing. The time is the server's. A stale, forged, malformed or other shift's code,
    or a position outside the geofence, is refused with `reason`. A volunteer scans for
    themselves only: another's number is answered as not signed up there."""
    if not actor.is_volunteer(body.volunteer_number):
        raise NotFound(f"{body.volunteer_number} is not signed up for this shift")
    position = None if body.lat is None or body.lon is None else (body.lat, body.lon)
    result = await handlers.scan(
        events_of(request),
        shift_codes(request),
        actor,
        code=body.code,
        volunteer_number=body.volunteer_number,
        shift_id=body.shift_id,
        position=position,
        now=now_of(request),
    )
    return {
        "result": result.result,
        "shift_id": result.shift_id,
        "volunteer_number": result.volunteer_number,
        "at": result.at.isoformat(),
        "minutes": result.minutes,
    }


@router.get("/shifts/{shift_id}/attendance", **allow(*STAFF, Role.team_leader), responses=problems(404))
async def list_attendance(shift_id: ShiftPath, row: Roster, request: Request) -> dict[str, Any]:
    """Who checked in and out, with minutes and flags (e.g. no_check_out): for staff over the
    shift's site and the leader of its team."""
    table = store.attendances
    async with reading(events_of(request).engine) as conn:
        rows = (
            (await conn.execute(select(table).where(table.c.shift_id == shift_id).order_by(table.c.volunteer_number)))
            .mappings()
            .all()
        )
    return {
        "shift_id": shift_id,
        "items": [
            {
                "volunteer_number": r["volunteer_number"],
                "checked_in_at": iso(r["checked_in_at"]),
                "checked_out_at": iso(r["checked_out_at"]),
                "minutes": r["minutes"],
                "flag": r["flag"],
            }
            for r in rows
        ],
    }
