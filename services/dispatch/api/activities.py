"""Activities (场次) with posts and shifts, recurring shifts, sign-up with a waiting list,
cancellation with notice, completion; and a volunteer's notices."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from services.dispatch import store
from services.dispatch.api import events_of, iso, now_of
from services.dispatch.handlers import activities as handlers
from shared.auth import STAFF, Role
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import SiteId, Skill, TeamId, VolunteerNumber
from shared.events.dispatch import (
    ActivityId,
    ActivityKind,
    Geofence,
    GroupServed,
    OrderId,
    PostId,
    Reason,
    ServiceField,
    ShiftId,
    Theme,
)
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["activities"])

Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ActivityPath = Annotated[ActivityId, Path(description="An activity id, e.g. A00000001.")]
ShiftPath = Annotated[ShiftId, Path(description="A shift id, e.g. SH00000001.")]


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


@router.post("/activities", **allow(*STAFF), status_code=201, responses=problems(409))
async def schedule_activity(body: NewActivity, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Schedule an activity at a practice site dispatch knows; its title, description and posts'
    titles stay in dispatch."""
    values = body.model_dump(exclude={"posts"})
    posts = [handlers.PostPlan(p.post_id, p.title, tuple(p.required_skills)) for p in body.posts]
    activity_id = await handlers.schedule_activity(events_of(request), actor, posts=posts, **values)
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
async def get_activity(activity_id: ActivityPath, request: Request) -> dict[str, Any]:
    """The activity, its posts and its shifts with how many are signed up."""
    table, shifts = store.activities, store.shifts
    async with reading(events_of(request).engine) as conn:
        row = (await conn.execute(select(table).where(table.c.activity_id == activity_id))).mappings().first()
        if row is None:
            raise NotFound(f"unknown activity {activity_id}")
        its_shifts = (
            await conn.execute(select(shifts).where(shifts.c.activity_id == activity_id).order_by(shifts.c.starts_at))
        ).mappings().all()
    return {
        **{k: row[k] for k in ("activity_id", "site_id", "kind", "theme", "field", "group_served", "order_id",
                               "brand_team_id", "status", "people_served", "title", "description", "posts")},
        "org_path": row["org_path"].split("/"),
        "starts_on": row["starts_on"].isoformat(),
        "ends_on": row["ends_on"].isoformat(),
        "shifts": [_shift(s) for s in its_shifts],
    }


@router.post("/activities/{activity_id}/shifts", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def open_shifts(activity_id: ActivityPath, body: NewShifts, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Open a shift, or a recurring series (e.g. every night 20:00–22:00 for 30 days: `count` 30)."""
    shift_ids = await handlers.open_shifts(events_of(request), actor, activity_id, now=now_of(request), **body.model_dump(exclude={"geofence"}), geofence=body.geofence)
    return {"activity_id": activity_id, "shift_ids": shift_ids}


@router.post("/activities/{activity_id}/complete", **allow(*STAFF), responses=problems(404, 409))
async def complete_activity(activity_id: ActivityPath, body: Completing, request: Request, actor: CurrentActor) -> dict[str, Any]:
    activity = await handlers.complete_activity(events_of(request), actor, activity_id, people_served=body.people_served, now=now_of(request))
    return {"activity_id": activity_id, "status": activity.status, "people_served": activity.people_served}


@router.post("/activities/{activity_id}/cancel", **allow(*STAFF), responses=problems(404, 409))
async def cancel_activity(activity_id: ActivityPath, body: Cancelling, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Cancel the activity and its shifts still to come; everyone signed up gets a notice."""
    activity = await handlers.cancel_activity(events_of(request), actor, activity_id, reason=body.reason, now=now_of(request))
    return {"activity_id": activity_id, "status": activity.status}


@router.get("/shifts/{shift_id}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_shift(shift_id: ShiftPath, request: Request) -> dict[str, Any]:
    """The shift, with its activity's title, for the shift page and the check-in page."""
    activities = store.activities
    async with reading(events_of(request).engine) as conn:
        row = await handlers.shift_row(conn, shift_id)
        title = await conn.scalar(select(activities.c.title).where(activities.c.activity_id == row["activity_id"]))
    return {**_shift(row), "title": title or ""}


@router.get("/shifts/{shift_id}/sign-ups", **allow(*STAFF, Role.team_leader), responses=problems(404))
async def list_sign_ups(shift_id: ShiftPath, request: Request) -> dict[str, Any]:
    """Who holds a place, in order of sign-up, and who waits."""
    signups = store.signups
    async with reading(events_of(request).engine) as conn:
        await handlers.shift_row(conn, shift_id)
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
async def sign_up(shift_id: ShiftPath, body: SigningUp, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Sign up: a place while the shift has room, else the waiting list. Again: the same answer."""
    position = await handlers.sign_up(events_of(request), actor, shift_id, body.volunteer_number, now_of(request))
    return {"shift_id": shift_id, "volunteer_number": body.volunteer_number, "position": str(position)}


@router.delete("/shifts/{shift_id}/sign-ups/{volunteer_number}", **allow(*STAFF, Role.volunteer), responses=problems(404, 409))
async def withdraw(shift_id: ShiftPath, volunteer_number: VolunteerNumber, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Withdraw; a freed place goes to the first one waiting, who is told."""
    state = await handlers.withdraw(events_of(request), actor, shift_id, volunteer_number, now_of(request))
    return {"shift_id": shift_id, "confirmed": list(state.confirmed), "waitlisted": list(state.waitlist)}


@router.post("/shifts/{shift_id}/cancel", **allow(*STAFF), responses=problems(404, 409))
async def cancel_shift(shift_id: ShiftPath, body: Cancelling, request: Request, actor: CurrentActor) -> dict[str, Any]:
    state = await handlers.cancel_shift(events_of(request), actor, shift_id, reason=body.reason, now=now_of(request))
    return {"shift_id": shift_id, "status": state.status}


@router.get("/volunteers/{volunteer_number}/notices", **allow(*STAFF, Role.volunteer), tags=["volunteers"])
async def notices(
    volunteer_number: VolunteerNumber,
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="The previous page's last notice id.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """What Beacon told the volunteer (a shift cancelled, a place freed), oldest first."""
    table = store.notices
    query = select(table).where(table.c.volunteer_number == volunteer_number).order_by(table.c.notice_id).limit(limit)
    if after is not None:
        query = query.where(table.c.notice_id > after)
    async with reading(events_of(request).engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
    items = [
        {"notice_id": r["notice_id"], "at": iso(r["at"]), "kind": r["kind"], "shift_id": r["shift_id"], "text": r["text"]}
        for r in rows
    ]
    return {"items": items, "next": items[-1]["notice_id"] if len(items) == limit else None}
