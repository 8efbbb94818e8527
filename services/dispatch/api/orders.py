"""Orders (点单 · 派单 · 接单): placing, dispatching, accepting, completing, rating; suggestions of
whom to send. A dispatch nobody accepted goes on by itself (the next suggested volunteers, or the
site one level up); staff may still dispatch and escalate by hand."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import and_, or_, select

from services.dispatch import orders, store
from services.dispatch.api import events_of, iso
from services.dispatch.api.reach import (
    OrderPath,
    ReachedOrder,
    answers_for,
    community_in_reach,
    order_in_reach,
    org_path_reached,
    placed_order_in_reach,
)
from services.dispatch.handlers import orders as handlers
from services.dispatch.orders import Order
from shared.auth import STAFF, Role
from shared.db import reading
from shared.envelope import utcnow
from shared.events.common import AgeBand, ReservationId, SiteId, Skill, TeamId, VolunteerNumber
from shared.events.dispatch import GroupServed, OrderId, OrderKind, PlacedVia, Reason, ServiceField, Urgency
from shared.ratelimit import RateLimit
from shared.web import CurrentActor, allow, problems

router = APIRouter()
# Per caller: community staff place a morning's orders at once, a volunteer a few.
PLACING = RateLimit("placing orders", per_minute=30, burst=10)


# --- Orders (点单 · 派单 · 接单) ---------------------------------------------------------------------

CommunityCode = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
FreeText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
# The order named in the path, if the caller reaches it (see reach.py); of volunteers, `Placed`
# only the one who placed it.
Reached = Annotated[ReachedOrder, Depends(order_in_reach)]
Placed = Annotated[ReachedOrder, Depends(placed_order_in_reach)]


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: OrderKind = OrderKind.order
    group_served: GroupServed
    field: ServiceField
    community_code: CommunityCode = Field(description="The 12-digit division code of the community served.")
    site_id: SiteId = Field(description="The practice site that owns the community and dispatches the order.")
    description: FreeText = Field(default="", description="What is needed; kept by dispatch, never published.")
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = Field(
        default="", description="Where; kept by dispatch, never published."
    )
    window_start: AwareDatetime
    window_end: AwareDatetime
    headcount: int = Field(ge=1, le=1000)
    required_skills: list[Skill] = Field(default_factory=list, max_length=20)
    required_certifications: list[Skill] = Field(default_factory=list, max_length=20)
    min_age_band: AgeBand | None = None
    max_age_band: AgeBand | None = None
    urgency: Urgency = Urgency.normal
    risky: bool = False
    placed_via: PlacedVia = PlacedVia.resident
    time_credit_reservation: ReservationId | None = Field(
        default=None,
        description="Pay with time credits set aside in points' time bank (POST /time-bank/{n}/reservations).",
    )


class Dispatching(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: TeamId | None = None
    volunteer_numbers: list[VolunteerNumber] = Field(default_factory=list, max_length=1000)
    site_id: SiteId
    deadline: AwareDatetime = Field(description="Accept or decline by then, or the order times out.")


class Opening(BaseModel):
    site_id: SiteId


class Declining(BaseModel):
    by: VolunteerNumber | TeamId = Field(description="The volunteer number or team id declining.")
    reason: Reason


class Accepting(BaseModel):
    by: VolunteerNumber | TeamId = Field(description="The volunteer number or team id accepting.")


class Taking(BaseModel):
    team_id: TeamId


class Escalating(BaseModel):
    to_site_id: SiteId


class Cancelling(BaseModel):
    reason: Reason


class Completing(BaseModel):
    people_served: int = Field(ge=0, le=100_000)


class Rating(BaseModel):
    rating: int = Field(ge=1, le=5)
    comment: FreeText | None = Field(default=None, description="Kept by dispatch, never published.")


def _state(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "status": order.status,
        "site_id": order.site_id,
        "community_code": order.community_code,
        "org_path": list(order.org_path),
        "window_start": order.window_start.isoformat(),
        "window_end": order.window_end.isoformat(),
        "headcount": order.headcount,
        "required_skills": list(order.required_skills),
        "required_certifications": list(order.required_certifications),
        "risky": order.risky,
        "attempts": order.attempts,
        "addressees": sorted(order.addressees),
        "declined": sorted(order.declined),
        "tried": sorted(order.tried),
        "accepted_by": list(order.accepted_by),
        "deadline": iso(order.deadline),
        "unanswered_at": iso(order.unanswered_at),
        "placed_at": order.placed_at.isoformat(),
        "dispatched_at": iso(order.dispatched_at),
        "accepted_at": iso(order.accepted_at),
        "people_served": order.people_served,
        "rating": order.rating,
        "version": order.version,
    }


@router.post(
    "/orders",
    **allow(*STAFF, Role.volunteer, limited_by=PLACING),
    status_code=201,
    tags=["orders"],
    responses=problems(404, 409),
)
async def place_order(body: NewOrder, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Place an order (点单): staff for a community they reach, a volunteer (as a resident) for
    any. The description and address stay in dispatch and are never published."""
    community_in_reach(actor, body.community_code)
    order_id = await handlers.place_order(events_of(request), actor, now=utcnow(), **body.model_dump())
    return {"order_id": order_id}


@router.get(
    "/orders/{order_id}", **allow(*STAFF, Role.team_leader, Role.volunteer), tags=["orders"], responses=problems(404)
)
async def get_order(order_id: OrderPath, reached: Reached, request: Request) -> dict[str, Any]:
    """The order's state, its free text, and its history from the event store: every dispatch,
    decline, time-out, re-dispatch, escalation, taking or cancellation, with who did it (staff,
    or `system:dispatch` for what followed by itself) and the event's payload. Staff over its
    community see it; a volunteer who placed it, was sent it or accepted it; a team leader whose
    team was sent it or took it, or any while it is open for taking."""
    order, envelopes = reached.order, reached.envelopes
    async with reading(events_of(request).engine) as conn:
        row = (await conn.execute(select(store.orders).where(store.orders.c.order_id == order_id))).mappings().first()
    state = _state(order)
    if row is not None:
        state.update(
            kind=row["kind"],
            group_served=row["group_served"],
            field=row["field"],
            urgency=row["urgency"],
            description=row["description"],
            address=row["address"],
            comment=row["comment"],
            completed_at=iso(row["completed_at"]),
        )
    state["overdue"] = orders.overdue(order, utcnow())
    state["history"] = [
        {
            "version": e.aggregate_version,
            "type": e.type,
            "actor": e.actor,
            "at": e.occurred_at.isoformat(),
            "payload": e.payload,  # no personal data: the free text is above, from the view
        }
        for e in envelopes
    ]
    return state


@router.get("/orders", **allow(*STAFF), tags=["orders"])
async def list_orders(
    request: Request,
    actor: CurrentActor,
    status: Annotated[str | None, Query(max_length=20)] = None,
    overdue: bool = False,
    site: Annotated[SiteId | None, Query()] = None,
    after: Annotated[OrderId | None, Query(description="The last order id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Orders of the communities the caller reaches, by id, a page at a time (a site outside
    their reach shows nothing, as one that does not exist); `overdue=true` lists those staff
    should look at: a dispatch past its deadline, a dispatch nobody accepted with nobody left to
    send it to and no site above, nobody accepted by the window's start, or not completed by its
    end."""
    table, now = store.orders, utcnow()
    query = select(table).where(org_path_reached(actor, table.c.org_path)).order_by(table.c.order_id).limit(limit)
    if status:
        query = query.where(table.c.status == status)
    if site:
        query = query.where(table.c.site_id == site)
    if after:
        query = query.where(table.c.order_id > after)
    if overdue:
        query = query.where(
            or_(
                and_(table.c.status == orders.DISPATCHED, table.c.deadline <= now),
                and_(table.c.status == orders.PLACED, table.c.unanswered_at.is_not(None)),
                and_(table.c.status.in_([orders.PLACED, orders.OPEN, orders.DISPATCHED]), table.c.window_start <= now),
                and_(table.c.status.in_([orders.ACCEPTED, orders.TAKEN]), table.c.window_end <= now),
            )
        )
    async with reading(events_of(request).engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
    items = [
        {
            "order_id": r["order_id"],
            "status": r["status"],
            "kind": r["kind"],
            "group_served": r["group_served"],
            "field": r["field"],
            "community_code": r["community_code"],
            "site_id": r["site_id"],
            "window_start": iso(r["window_start"]),
            "window_end": iso(r["window_end"]),
            "headcount": r["headcount"],
            "urgency": r["urgency"],
            "attempts": r["attempts"],
            "deadline": iso(r["deadline"]),
            "unanswered_at": iso(r["unanswered_at"]),
            "rating": r["rating"],
        }
        for r in rows
    ]
    return {"items": items, "next": items[-1]["order_id"] if len(items) == limit else None}


@router.post("/orders/{order_id}/dispatch", **allow(*STAFF), tags=["orders"], responses=problems(404, 409))
async def dispatch_order(
    order_id: OrderPath, reached: Reached, body: Dispatching, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Dispatch the order (派单) to one team or to named volunteers, to answer by the deadline."""
    order = await handlers.dispatch_order(events_of(request), actor, order_id, now=utcnow(), **body.model_dump())
    return _state(order)


@router.post("/orders/{order_id}/open", **allow(*STAFF), tags=["orders"], responses=problems(404, 409))
async def open_for_taking(
    order_id: OrderPath, reached: Reached, body: Opening, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Open the order for teams to take (抢单): every team leader sees it while it is open."""
    return _state(
        await handlers.open_for_taking(events_of(request), actor, order_id, site_id=body.site_id, now=utcnow())
    )


@router.post(
    "/orders/{order_id}/decline",
    **allow(*STAFF, Role.volunteer, Role.team_leader),
    tags=["orders"],
    responses=problems(404, 409),
)
async def decline(
    order_id: OrderPath, reached: Reached, body: Declining, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Decline the order: a volunteer for themselves, a team leader for their team, staff for
    whoever told them. When the last one it went to declines, it goes on at once to the next
    suggested volunteers, or up a level; the answer is the order after that."""
    answers_for(actor, body.by, "by")
    return _state(
        await handlers.decline(events_of(request), actor, order_id, by=body.by, reason=body.reason, now=utcnow())
    )


@router.post(
    "/orders/{order_id}/accept",
    **allow(*STAFF, Role.volunteer, Role.team_leader),
    tags=["orders"],
    responses=problems(404, 409),
)
async def accept(
    order_id: OrderPath, reached: Reached, body: Accepting, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Accept the order (接单): a volunteer for themselves, a team leader for their team, staff for
    whoever told them; accepting again changes nothing."""
    answers_for(actor, body.by, "by")
    return _state(await handlers.accept(events_of(request), actor, order_id, by=body.by, now=utcnow()))


@router.post(
    "/orders/{order_id}/take", **allow(*STAFF, Role.team_leader), tags=["orders"], responses=problems(404, 409)
)
async def take(
    order_id: OrderPath, reached: Reached, body: Taking, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Take an order open for taking (抢单): a team leader for their team."""
    answers_for(actor, body.team_id, "team_id")
    return _state(await handlers.take(events_of(request), actor, order_id, team_id=body.team_id, now=utcnow()))


@router.post("/orders/{order_id}/escalate", **allow(*STAFF), tags=["orders"], responses=problems(404, 409))
async def escalate(
    order_id: OrderPath, reached: Reached, body: Escalating, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Hand the order to the site one level up, which dispatches it from now (by hand; Beacon does
    it by itself when a dispatch went unanswered and no suggested volunteer is left)."""
    return _state(
        await handlers.escalate(events_of(request), actor, order_id, to_site_id=body.to_site_id, now=utcnow())
    )


@router.post(
    "/orders/{order_id}/cancel", **allow(*STAFF, Role.volunteer), tags=["orders"], responses=problems(404, 409)
)
async def cancel(
    order_id: OrderPath, placed: Placed, body: Cancelling, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Cancel the order: staff over its community, or the volunteer who placed it."""
    return _state(await handlers.cancel(events_of(request), actor, order_id, reason=body.reason, now=utcnow()))


@router.post(
    "/orders/{order_id}/complete",
    **allow(*STAFF, Role.team_leader, Role.volunteer),
    tags=["orders"],
    responses=problems(404, 409),
)
async def complete(
    order_id: OrderPath, reached: Reached, body: Completing, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Mark the order done: staff over its community, the volunteer who placed or served it, the
    leader of the team that served it."""
    order = await handlers.complete(events_of(request), actor, order_id, people_served=body.people_served, now=utcnow())
    return _state(order)


@router.post("/orders/{order_id}/rate", **allow(*STAFF, Role.volunteer), tags=["orders"], responses=problems(404, 409))
async def rate(
    order_id: OrderPath, placed: Placed, body: Rating, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """The resident's 1–5 rating (the volunteer who placed it, or staff for them); the comment
    stays in dispatch."""
    order = await handlers.rate(
        events_of(request), actor, order_id, rating=body.rating, comment=body.comment, now=utcnow()
    )
    return _state(order)


@router.get("/orders/{order_id}/suggestions", **allow(*STAFF), tags=["orders"], responses=problems(404))
async def suggest(order_id: OrderPath, reached: Reached, request: Request) -> dict[str, Any]:
    """Volunteers who may be sent, best first, each with why; and those left out, with why."""
    _, ranked, left_out = await handlers.suggestions(events_of(request), order_id, utcnow())
    return {
        "order_id": order_id,
        "suggestions": [
            {"volunteer_number": s.volunteer_number, "rank": s.rank, "reasons": list(s.reasons)} for s in ranked
        ],
        "excluded": [{"volunteer_number": n, "reasons": why} for n, why in left_out.items()],
    }
