"""A volunteer's own things, for their phone: their sign-ups with each shift, and their service
records with the hours that count; and the phone page (`GET /me`) that shows them beside their
points, stars and certificates from the other services."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from services.dispatch import store
from services.dispatch.api import events_of, iso
from services.dispatch.api.board import page
from services.dispatch.api.reach import VolunteerPath, volunteer_in_reach
from shared.auth import STAFF, Role
from shared.db import reading
from shared.web import ANYONE, allow, problems

router = APIRouter()

# The volunteer in the path: the volunteer themselves, or staff over their home community.
Volunteer = Annotated[str, Depends(volunteer_in_reach)]


def _hours(value: Decimal | None) -> str:
    return "0" if value is None else format(Decimal(value).normalize(), "f")


@router.get(
    "/volunteers/{volunteer_number}/sign-ups",
    **allow(*STAFF, Role.volunteer),
    tags=["volunteers"],
    responses=problems(404),
)
async def sign_ups_of(
    volunteer_number: VolunteerPath,
    reached: Volunteer,
    request: Request,
    withdrawn: Annotated[bool, Query(description="Also the sign-ups withdrawn or cancelled.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The volunteer's sign-ups, the latest shift first, each with its shift, activity and
    whether they checked in and out: for the volunteer and staff over their home community."""
    s, u, a, t = store.shifts, store.signups, store.activities, store.attendances
    query = (
        select(
            u.c.shift_id, u.c.position, u.c.signed_up_at, s.c.activity_id, s.c.site_id, s.c.post_id, s.c.starts_at,
            s.c.ends_at, s.c.status, s.c.geofence, a.c.title, t.c.checked_in_at, t.c.checked_out_at, t.c.minutes,
        )
        .join(s, s.c.shift_id == u.c.shift_id)
        .join(a, a.c.activity_id == s.c.activity_id, isouter=True)
        .join(t, (t.c.shift_id == u.c.shift_id) & (t.c.volunteer_number == u.c.volunteer_number), isouter=True)
        .where(u.c.volunteer_number == volunteer_number)
        .order_by(s.c.starts_at.desc(), u.c.shift_id)
        .limit(limit)
    )  # fmt: skip
    if not withdrawn:
        query = query.where(u.c.position.in_(["confirmed", "waitlisted"]))
    async with reading(events_of(request).engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
    items = [
        {
            "shift_id": r["shift_id"],
            "position": r["position"],
            "signed_up_at": iso(r["signed_up_at"]),
            "activity_id": r["activity_id"],
            "title": r["title"] or "",
            "site_id": r["site_id"],
            "post_id": r["post_id"],
            "starts_at": iso(r["starts_at"]),
            "ends_at": iso(r["ends_at"]),
            "status": r["status"],
            "geofence": r["geofence"] is not None,
            "checked_in_at": iso(r["checked_in_at"]),
            "checked_out_at": iso(r["checked_out_at"]),
            "minutes": r["minutes"],
        }
        for r in rows
    ]
    return {"volunteer_number": volunteer_number, "items": items}


@router.get(
    "/volunteers/{volunteer_number}/service-records",
    **allow(*STAFF, Role.volunteer),
    tags=["volunteers"],
    responses=problems(404),
)
async def service_records_of(
    volunteer_number: VolunteerPath,
    reached: Volunteer,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The volunteer's service records, the latest first, and the hours that count (confirmed
    records only): for the volunteer and staff over their home community."""
    r = store.service_records
    mine = r.c.volunteer_number == volunteer_number
    async with reading(events_of(request).engine) as conn:
        rows = (
            (await conn.execute(select(r).where(mine).order_by(r.c.started_at.desc(), r.c.record_id).limit(limit)))
            .mappings()
            .all()
        )
        totals = (
            await conn.execute(
                select(func.coalesce(func.sum(r.c.counted_hours), 0), func.count()).where(
                    mine, r.c.status == "confirmed"
                )
            )
        ).one()
    items = [
        {
            "record_id": row["record_id"],
            "status": row["status"],
            "activity_id": row["activity_id"],
            "shift_id": row["shift_id"],
            "site_id": row["site_id"],
            "field": row["field"],
            "source": row["source"],
            "service_date": row["service_date"].isoformat(),
            "started_at": iso(row["started_at"]),
            "ended_at": iso(row["ended_at"]),
            "minutes": row["minutes"],
            "hours": _hours(row["hours"]),
            "counted_hours": _hours(row["counted_hours"]),
            "flag": row["flag"],
            "correction_pending": row["correction_pending"],
        }
        for row in rows
    ]
    return {
        "volunteer_number": volunteer_number,
        "confirmed_hours": _hours(totals[0]),
        "confirmed_records": totals[1],
        "items": items,
    }


@router.get("/me", **allow(ANYONE), response_class=HTMLResponse, tags=["pages"])
async def my_pages(
    request: Request, lang: Annotated[str | None, Query(pattern="^(zh|en)$", description="zh or en")] = None
) -> HTMLResponse:
    """The volunteer's phone page: their shifts, check-in by scan, hours, points and stars,
    certificates. Its script signs in (or takes `#token=`) and reads the APIs."""
    return page(request, "me.html", lang)
