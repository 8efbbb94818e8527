"""The time bank's routes: a volunteer's time credits and family, gifts to family, and credits
set aside to pay for an order at dispatch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.points import store, timebank
from services.points.api.reach import Row, VolunteerPath, account_in_reach, reservation_in_reach
from services.points.timebank import Reservation
from shared.auth import STAFF, Role
from shared.citytime import city_date
from shared.db import reading
from shared.events.common import ReservationId, VolunteerNumber
from shared.events.points import Minutes, Relation
from shared.web import CurrentActor, allow, events_of, now_of, problems

router = APIRouter(tags=["time bank"])

AccountInReach = Annotated[Row, Depends(account_in_reach)]
ReservationInReach = Annotated[Row, Depends(reservation_in_reach)]
Amount = Annotated[int, Field(ge=1, le=100_000, description="Minutes of time credits.")]


class Linking(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_number: VolunteerNumber = Field(description="The family member's volunteer number (registered in Beacon).")
    relation: Relation


class Giving(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_number: VolunteerNumber
    minutes: Amount


class Reserving(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: Amount
    beneficiary_number: VolunteerNumber | None = Field(
        default=None, description="A linked family member the order is for; the volunteer themselves when absent."
    )


class LimitInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes_per_year: Minutes


def _reservation(r: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": r.reservation_id,
        "volunteer_number": r.volunteer_number,
        "beneficiary_number": r.beneficiary_number,
        "minutes": r.minutes,
        "state": r.state,
        "order_id": r.order_id,
        "expires_at": r.expires_at.isoformat(),
    }


@router.get("/time-bank/{volunteer_number}", **allow(*STAFF, Role.volunteer), responses=problems(404))
async def time_bank(volunteer_number: VolunteerPath, account: AccountInReach, request: Request) -> dict[str, Any]:
    """Time credits available, family, what was given this year against the limit, reservations.
    Every time-bank route on a volunteer is for the volunteer themselves and staff over their
    community; family members may live anywhere in the city."""
    now = now_of(request)
    async with reading(events_of(request).engine) as conn:
        family = await conn.execute(
            select(store.family_links.c.member_number, store.family_links.c.relation)
            .where(store.family_links.c.volunteer_number == volunteer_number)
            .order_by(store.family_links.c.member_number)
        )
        g = store.time_gifts.c
        given = await conn.scalar(
            select(g.minutes).where(g.volunteer_number == volunteer_number, g.year == city_date(now).year)
        )
        limit = await timebank.transfer_limit(conn)
        rows = await conn.execute(
            select(store.reservations)
            .where(store.reservations.c.volunteer_number == volunteer_number)
            .order_by(store.reservations.c.reservation_id.desc())
            .limit(50)
        )
        reservations = [_reservation(timebank.reservation_of(r)) for r in rows.mappings()]
    return {
        "volunteer_number": volunteer_number,
        "minutes": account["time_minutes"] - account["time_debt"],
        "debt_minutes": account["time_debt"],
        "family": [{"member_number": m, "relation": r} for m, r in family],
        "given_this_year": given or 0,
        "yearly_limit": limit,
        "reservations": reservations,
    }


@router.post(
    "/time-bank/{volunteer_number}/family",
    **allow(*STAFF, Role.volunteer),
    status_code=201,
    responses=problems(404, 409),
)
async def link(
    volunteer_number: VolunteerPath, account: AccountInReach, body: Linking, request: Request, actor: CurrentActor
) -> dict[str, str]:
    await timebank.link(events_of(request), volunteer_number, body.member_number, body.relation, actor)
    return {"volunteer_number": volunteer_number, "member_number": body.member_number, "relation": body.relation}


@router.delete(
    "/time-bank/{volunteer_number}/family/{member_number}",
    **allow(*STAFF, Role.volunteer),
    status_code=204,
    responses=problems(404, 409),
)
async def unlink(
    volunteer_number: VolunteerPath,
    account: AccountInReach,
    member_number: VolunteerNumber,
    request: Request,
    actor: CurrentActor,
) -> Response:
    """Unlink a family member: a number not linked to the volunteer is answered as unknown."""
    await timebank.unlink(events_of(request), volunteer_number, member_number, actor)
    return Response(status_code=204)


@router.post(
    "/time-bank/{volunteer_number}/gifts",
    **allow(*STAFF, Role.volunteer),
    status_code=201,
    responses=problems(404, 409),
)
async def give(
    volunteer_number: VolunteerPath, account: AccountInReach, body: Giving, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Give time credits to a linked family member, within the city's yearly limit."""
    gift = await timebank.give(
        events_of(request), volunteer_number, body.member_number, body.minutes, actor, now_of(request)
    )
    return gift.model_dump(mode="json")


@router.post(
    "/time-bank/{volunteer_number}/reservations",
    **allow(*STAFF, Role.volunteer),
    status_code=201,
    responses=problems(404, 409),
)
async def reserve(
    volunteer_number: VolunteerPath,
    account: AccountInReach,
    body: Reserving,
    request: Request,
    response: Response,
    actor: CurrentActor,
) -> dict[str, Any]:
    """Set credits aside for an order: name the reservation in dispatch's POST /orders
    (`time_credit_reservation`) before it expires."""
    reservation = await timebank.reserve(
        events_of(request), volunteer_number, body.minutes, body.beneficiary_number, actor, now_of(request)
    )
    response.headers["Location"] = f"/time-bank/reservations/{reservation.reservation_id}"
    return _reservation(reservation)


@router.get("/time-bank/reservations/{reservation_id}", **allow(*STAFF, Role.volunteer), responses=problems(404))
async def get_reservation(reservation_id: ReservationId, row: ReservationInReach) -> dict[str, Any]:
    """A reservation, for its volunteer and staff over their community."""
    return _reservation(timebank.reservation_of(row))


@router.post(
    "/time-bank/reservations/{reservation_id}/withdraw", **allow(*STAFF, Role.volunteer), responses=problems(404, 409)
)
async def withdraw(
    reservation_id: ReservationId, row: ReservationInReach, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Return the credits of a reservation no order has taken. For its volunteer and staff over
    their community."""
    return _reservation(await timebank.withdraw(events_of(request), reservation_id, actor, now_of(request)))


@router.put("/time-bank/limits", **allow(Role.city_admin), responses=problems(409))
async def set_limit(body: LimitInput, request: Request, actor: CurrentActor) -> dict[str, int]:
    """How many minutes a volunteer may give to family in a calendar year."""
    return {"minutes_per_year": await timebank.set_transfer_limit(events_of(request), body.minutes_per_year, actor)}
