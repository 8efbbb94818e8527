"""Activities (场次) with posts and shifts, recurring shifts, sign-up with a waiting list,
cancellation with notice, completion; and a volunteer's notices."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from services.dispatch import store
from services.dispatch.api import events_of, iso, now_of
from services.dispatch.api.reach import (
    ActivityPath,
    ShiftPath,
    VolunteerPath,
    activity_in_reach,
    may_sign_up,
    order_named,
    shift_in_reach,
    shift_roster_in_reach,
    sign_up_in_reach,
    site_in_reach,
    volunteer_in_reach,
)
from services.dispatch.handlers import activities as handlers
from shared.auth import STAFF, Role
from shared.db import reading
from shared.events.common import SiteId, Skill, TeamId, VolunteerNumber
from shared.events.dispatch import (
    ActivityKind,
    Geofence,
    GroupServed,
    OrderId,
    PostId,
    Reason,
    ServiceField,
    Theme,
)
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["activities"])

Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
# What the path names, if the caller reaches it (see reach.py).
Activity = Annotated[dict[str, Any], Depends(activity_in_reach)]
Shift = Annotated[dict[str, Any], Depends(shift_in_reach)]
Roster = Annotated[dict[str, Any], Depends(shift_roster_in_reach)]
SignUp = Annotated[tuple[dict[str, Any], str], Depends(sign_up_in_reach)]
Volunteer = Annotated[str, Depends(volunteer_in_reach)]


class NewPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    post_id: PostId = Field(description="A code for the post, e.g. crossing_north.")
    title: Title = Field(default="", description="Kept by dispatch, never published.")
    required_skills: list[Skill] = Field(default_factory=list, max_length=20)


class NewActivity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId = Field(description="The practice site that organises it.")
    kind: ActivityKind
    theme: Theme
    field: ServiceField
    group_served: GroupServed
    starts_on: date
    ends_on: date
    title: Title = Field(default="", description="Kept by dispatch, never published.")
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)] = ""
    posts: list[NewPost] = Field(default_factory=list, max_length=100)
    order_id: OrderId | None = Field(default=None, description="The order it serves (kind from_order).")
    brand_team_id: TeamId | None = None


class NewShifts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: int = Field(ge=1, le=100_000)
    post_id: PostId | None = None
    geofence: Geofence | None = None
    every_days: int = Field(default=1, ge=1, le=366, description="Days between repetitions.")
    count: int = Field(default=1, ge=1, le=366, description="How many shifts: 30 for every night of a month.")


class Completing(BaseModel):
    people_served: int = Field(ge=0, le=10_000_000)


class Cancelling(BaseModel):
    reason: Reason


class SigningUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volunteer_number: VolunteerNumber


@router.post("/activities", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def schedule_activity(body: NewActivity, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Schedule an activity at a practice site dispatch knows and the caller reaches (any other is
    answered as unknown); its title, description and posts' titles stay in dispatch."""
    events = events_of(request)
    async with reading(events.engine) as conn:
        await site_in_reach(conn, actor, body.site_id)
    if body.order_id is not None:
        await order_named(request, actor, body.order_id)
    values = body.model_dump(exclude={"posts"})
    posts = [handlers.PostPlan(p.post_id, p.title, tuple(p.required_skills)) for p in body.posts]
    activity_id = await handlers.schedule_activity(events, actor, posts=posts, **values)
    return {"activity_id": activity_id}


def _shift(row: Any) -> dict[str, Any]:
    return {
        "shift_id": row["shift_id"],
        "activity_id": row["activity_id"],
        "site_id": row["site_id"],
        "post_id": row["post_id"],
        "series_id": row["series_id"],
        "starts_at": iso(row["starts_at"]),
        "ends_at": iso(row["ends_at"]),
        "capacity": row["capacity"],
        "geofence": row["geofence"],
        "status": row["status"],
        "confirmed": row["confirmed"],
        "waitlisted": row["waitlisted"],
    }


@router.get("/activities/{activity_id}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_activity(activity_id: ActivityPath, row: Activity, request: Request) -> dict[str, Any]:
    """The activity, its posts and its shifts with how many are signed up: for staff over its
    site, and for every volunteer and team leader of the city (to sign up)."""
    shifts = store.shifts
    async with reading(events_of(request).engine) as conn:
        its_shifts = (
            (await conn.execute(select(shifts).where(shifts.c.activity_id == activity_id).order_by(shifts.c.starts_at)))
            .mappings()
            .all()
        )
    return {
        **{
            k: row[k]
            for k in (
                "activity_id",
                "site_id",
                "kind",
                "theme",
                "field",
                "group_served",
                "order_id",
                "brand_team_id",
                "status",
                "people_served",
                "title",
                "description",
                "posts",
            )
        },
        "org_path": row["org_path"].split("/"),
        "starts_on": row["starts_on"].isoformat(),
        "ends_on": row["ends_on"].isoformat(),
        "shifts": [_shift(s) for s in its_shifts],
    }


@router.post("/activities/{activity_id}/shifts", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def open_shifts(
    activity_id: ActivityPath, row: Activity, body: NewShifts, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Open a shift, or a recurring series (e.g. every night 20:00–22:00 for 30 days: `count` 30)."""
    shift_ids = await handlers.open_shifts(
        events_of(request),
        actor,
        activity_id,
        now=now_of(request),
        **body.model_dump(exclude={"geofence"}),
        geofence=body.geofence,
    )
    return {"activity_id": activity_id, "shift_ids": shift_ids}


@router.post("/activities/{activity_id}/complete", **allow(*STAFF), responses=problems(404, 409))
async def complete_activity(
    activity_id: ActivityPath, row: Activity, body: Completing, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    activity = await handlers.complete_activity(
        events_of(request), actor, activity_id, people_served=body.people_served, now=now_of(request)
    )
    return {"activity_id": activity_id, "status": activity.status, "people_served": activity.people_served}


@router.post("/activities/{activity_id}/cancel", **allow(*STAFF), responses=problems(404, 409))
async def cancel_activity(
    activity_id: ActivityPath, row: Activity, body: Cancelling, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Cancel the activity and its shifts still to come; everyone signed up gets a notice."""
    activity = await handlers.cancel_activity(
        events_of(request), actor, activity_id, reason=body.reason, now=now_of(request)
    )
    return {"activity_id": activity_id, "status": activity.status}


@router.get("/shifts/{shift_id}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_shift(shift_id: ShiftPath, row: Shift, request: Request) -> dict[str, Any]:
    """The shift, with its activity's title, for the shift page and the check-in page: for staff
    over its site, and for every volunteer and team leader of the city."""
    activities = store.activities
    async with reading(events_of(request).engine) as conn:
        title = await conn.scalar(select(activities.c.title).where(activities.c.activity_id == row["activity_id"]))
    return {**_shift(row), "title": title or ""}


@router.get("/shifts/{shift_id}/sign-ups", **allow(*STAFF, Role.team_leader), responses=problems(404))
async def list_sign_ups(shift_id: ShiftPath, row: Roster, request: Request) -> dict[str, Any]:
    """Who holds a place, in order of sign-up, and who waits: for staff over the shift's site and
    the leader of its team."""
    signups = store.signups
    async with reading(events_of(request).engine) as conn:
        rows = (
            await conn.execute(
                select(signups.c.volunteer_number, signups.c.position, signups.c.signed_up_at)
                .where(signups.c.shift_id == shift_id)
                .order_by(signups.c.signed_up_at, signups.c.volunteer_number)
            )
        ).all()
    return {
        "shift_id": shift_id,
        "confirmed": [n for n, p, _ in rows if p == "confirmed"],
        "waitlisted": [n for n, p, _ in rows if p == "waitlisted"],
    }


@router.post("/shifts/{shift_id}/sign-ups", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def sign_up(
    shift_id: ShiftPath, row: Shift, body: SigningUp, request: Request, actor: CurrentActor
) -> dict[str, str]:
    """Sign up: a place while the shift has room, else the waiting list. Again: the same answer.
    A volunteer signs themselves up for any shift of the city; staff sign anyone up for a shift
    they reach."""
    may_sign_up(actor, shift_id, body.volunteer_number)
    position = await handlers.sign_up(events_of(request), actor, shift_id, body.volunteer_number, now_of(request))
    return {"shift_id": shift_id, "volunteer_number": body.volunteer_number, "position": str(position)}


@router.delete(
    "/shifts/{shift_id}/sign-ups/{volunteer_number}", **allow(*STAFF, Role.volunteer), responses=problems(404, 409)
)
async def withdraw(
    shift_id: ShiftPath, volunteer_number: VolunteerPath, reached: SignUp, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Withdraw (a volunteer their own sign-up, staff anyone's from a shift they reach); a freed
    place goes to the first one waiting, who is told."""
    state = await handlers.withdraw(events_of(request), actor, shift_id, volunteer_number, now_of(request))
    return {"shift_id": shift_id, "confirmed": list(state.confirmed), "waitlisted": list(state.waitlist)}


@router.post("/shifts/{shift_id}/cancel", **allow(*STAFF), responses=problems(404, 409))
async def cancel_shift(
    shift_id: ShiftPath, row: Shift, body: Cancelling, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    state = await handlers.cancel_shift(events_of(request), actor, shift_id, reason=body.reason, now=now_of(request))
    return {"shift_id": shift_id, "status": state.status}


@router.get(
    "/volunteers/{volunteer_number}/notices",
    **allow(*STAFF, Role.volunteer),
    tags=["volunteers"],
    responses=problems(404),
)
async def notices(
    volunteer_number: VolunteerPath,
    reached: Volunteer,
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="The previous page's last notice id.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """What Beacon told the volunteer (a shift cancelled, a place freed), oldest first: for the
    volunteer and staff over their home community."""
    table = store.notices
    query = select(table).where(table.c.volunteer_number == volunteer_number).order_by(table.c.notice_id).limit(limit)
    if after is not None:
        query = query.where(table.c.notice_id > after)
    async with reading(events_of(request).engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
    items = [
        {
            "notice_id": r["notice_id"],
            "at": iso(r["at"]),
            "kind": r["kind"],
            "shift_id": r["shift_id"],
            "text": r["text"],
        }
        for r in rows
    ]
    return {"items": items, "next": items[-1]["notice_id"] if len(items) == limit else None}
