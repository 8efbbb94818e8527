"""Who reaches what in dispatch: one FastAPI dependency per kind of thing named in a path, run
before the body is read, so that a caller outside its reach gets exactly the 404 an unknown id
gets, whatever they send (shared/auth.py). The rules:

- staff reach a thing through its org path (the order's community, the site of an activity, shift
  or service record, a volunteer's home community); the city admin reaches everything;
- a volunteer reaches themselves (their notices, sign-ups and service records), the orders they
  placed or were sent or accepted, and every activity and shift in the city (to sign up anywhere);
- a team leader reaches the orders sent to, accepted or taken by their team, every order open for
  taking (抢单: any team may take it), every activity and shift in the city, and the sign-ups and
  attendance of their team's shifts (an activity their team brands, or one serving an order
  their team accepted).

Lists filter to the caller's reach the same way (`org_path_reached`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy import ColumnElement, literal, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch import orders, store
from services.dispatch.orders import Order
from shared.auth import Actor, Role
from shared.catalog import catalog
from shared.db import reading
from shared.envelope import EventEnvelope
from shared.errors import Invalid, NotFound
from shared.events.common import VolunteerNumber
from shared.events.dispatch import ActivityId, OrderId, RecordId, ShiftId
from shared.web import CurrentActor, events_of

OrderPath = Annotated[OrderId, Path(description="An order id, e.g. O00000001.")]
ActivityPath = Annotated[ActivityId, Path(description="An activity id, e.g. A00000001.")]
ShiftPath = Annotated[ShiftId, Path(description="A shift id, e.g. SH00000001.")]
RecordPath = Annotated[RecordId, Path(description="A service record id, e.g. R00000001.")]
VolunteerPath = Annotated[VolunteerNumber, Path(description="A volunteer number, e.g. V00000001.")]
DistrictPath = Annotated[str, Path(pattern=r"^\d{6}$", description="A district's 6-digit division code.")]

# Roles that see every activity and shift of the city: volunteers sign up anywhere, and team
# leaders look for what their team could serve.
CITY_WIDE_SHIFTS = frozenset({Role.team_leader, Role.volunteer})


def _path(stored: str) -> tuple[str, ...]:
    return tuple(stored.split("/"))


def org_path_reached(actor: Actor, column: Any) -> ColumnElement[bool]:
    """A condition on a stored org path ("district/street/community") that holds where the staff
    actor reaches it: their node is one of the path's codes."""
    if actor.role is Role.city_admin:
        return true()
    if not actor.is_staff:
        return literal(False)
    return ("/" + column + "/").contains(f"/{actor.scope}/", autoescape=True)


# --- Orders ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReachedOrder:
    order: Order
    envelopes: list[EventEnvelope]

    @property
    def placed_by(self) -> str:
        """The account that placed the order (the actor of its first event)."""
        return self.envelopes[0].actor


def order_reached(order: Order, placed_by: str, actor: Actor) -> bool:
    if actor.reaches(order.org_path):
        return True
    answered = order.tried | set(order.accepted_by)  # whom it was sent to, who accepted or took it
    if actor.role is Role.team_leader:
        return order.status == orders.OPEN or actor.scope in answered
    if actor.role is Role.volunteer:
        return placed_by == actor.id or actor.scope in answered
    return False


async def order_in_reach(order_id: OrderPath, request: Request, actor: CurrentActor) -> ReachedOrder:
    envelopes = await events_of(request).load("order", order_id)
    order = orders.fold(catalog.payload_of(e) for e in envelopes) if envelopes else None
    if order is None or not order_reached(order, envelopes[0].actor, actor):
        raise NotFound(f"unknown order {order_id}")
    return ReachedOrder(order, envelopes)


async def order_named(request: Request, actor: Actor, order_id: str) -> None:
    """An order a body names (an activity serving it), if the caller reaches it."""
    await order_in_reach(order_id, request, actor)


async def placed_order_in_reach(order_id: OrderPath, request: Request, actor: CurrentActor) -> ReachedOrder:
    """As `order_in_reach`, but of volunteers only the one who placed the order: the resident
    cancels and rates it, not those sent to serve it."""
    reached = await order_in_reach(order_id, request, actor)
    if actor.role is Role.volunteer and reached.placed_by != actor.id:
        raise NotFound(f"unknown order {order_id}")
    return reached


# --- Activities and shifts ------------------------------------------------------------------------


async def activity_in_reach(activity_id: ActivityPath, request: Request, actor: CurrentActor) -> dict[str, Any]:
    table = store.activities
    async with reading(events_of(request).engine) as conn:
        row = (await conn.execute(select(table).where(table.c.activity_id == activity_id))).mappings().first()
    if row is None or not (actor.role in CITY_WIDE_SHIFTS or actor.reaches(_path(row["org_path"]))):
        raise NotFound(f"unknown activity {activity_id}")
    return dict(row)


async def _shift_row(conn: AsyncConnection, shift_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(store.shifts).where(store.shifts.c.shift_id == shift_id))).mappings().first()
    return None if row is None else dict(row)


async def shift_in_reach(shift_id: ShiftPath, request: Request, actor: CurrentActor) -> dict[str, Any]:
    async with reading(events_of(request).engine) as conn:
        row = await _shift_row(conn, shift_id)
    if row is None or not (actor.role in CITY_WIDE_SHIFTS or actor.reaches(_path(row["org_path"]))):
        raise NotFound(f"unknown shift {shift_id}")
    return row


async def _team_runs(conn: AsyncConnection, team_id: str, activity_id: str) -> bool:
    """Whether the activity is the team's: it brands it, or serves an order the team accepted."""
    activity = (
        await conn.execute(
            select(store.activities.c.brand_team_id, store.activities.c.order_id).where(
                store.activities.c.activity_id == activity_id
            )
        )
    ).first()
    if activity is None:
        return False
    if activity.brand_team_id == team_id:
        return True
    if activity.order_id is None:
        return False
    a = store.order_assignees
    serving = select(a.c.assignee).where(a.c.order_id == activity.order_id, a.c.assignee == team_id)
    return await conn.scalar(serving) is not None


async def shift_roster_in_reach(shift_id: ShiftPath, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """The shift, for who signed up and who attended: staff over it, the leader of its team."""
    async with reading(events_of(request).engine) as conn:
        row = await _shift_row(conn, shift_id)
        reached = row is not None and (
            actor.reaches(_path(row["org_path"]))
            or (actor.role is Role.team_leader and await _team_runs(conn, actor.scope, row["activity_id"]))
        )
    if row is None or not reached:
        raise NotFound(f"unknown shift {shift_id}")
    return row


async def sign_up_in_reach(
    shift: Annotated[dict[str, Any], Depends(shift_in_reach)], volunteer_number: VolunteerPath, actor: CurrentActor
) -> tuple[dict[str, Any], str]:
    """A volunteer's sign-up for a shift: their own, for the volunteer; anyone's on a shift staff
    reach (they run its roster, whoever signed up)."""
    if actor.role is Role.volunteer and not actor.is_volunteer(volunteer_number):
        raise NotFound(f"{volunteer_number} is not signed up for shift {shift['shift_id']}")
    return shift, volunteer_number


def may_sign_up(actor: Actor, shift_id: str, volunteer_number: str) -> None:
    """A volunteer signs themselves up; staff anyone, on a shift they reach."""
    if actor.role is Role.volunteer and not actor.is_volunteer(volunteer_number):
        raise NotFound(f"{volunteer_number} cannot be signed up for shift {shift_id} by you", field="volunteer_number")


# --- Volunteers, service records, districts -------------------------------------------------------


async def volunteer_in_reach(volunteer_number: VolunteerPath, request: Request, actor: CurrentActor) -> str:
    """Staff over the volunteer's home community, or the volunteer themselves."""
    if actor.is_volunteer(volunteer_number):
        return volunteer_number
    known = store.volunteers
    async with reading(events_of(request).engine) as conn:
        home = await conn.scalar(select(known.c.org_path).where(known.c.volunteer_number == volunteer_number))
    if home is None or not actor.reaches(_path(home)):
        raise NotFound(f"dispatch does not know volunteer {volunteer_number}")
    return volunteer_number


async def record_in_reach(record_id: RecordPath, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Staff over the record's site, or the volunteer whose record it is."""
    table = store.service_records
    async with reading(events_of(request).engine) as conn:
        row = (await conn.execute(select(table).where(table.c.record_id == record_id))).mappings().first()
    if row is None or not (actor.reaches(_path(row["org_path"])) or actor.is_volunteer(row["volunteer_number"])):
        raise NotFound(f"unknown service record {record_id}")
    return dict(row)


def _district_seen_by(actor: Actor, district_code: str) -> bool:
    """Staff over the district, or anywhere in it (whose records it rounds), read its rule."""
    return actor.reaches((district_code,)) or (actor.is_staff and actor.scope.startswith(district_code))


async def district_seen(district_code: DistrictPath, actor: CurrentActor) -> str:
    if not _district_seen_by(actor, district_code):
        raise NotFound(f"unknown district {district_code}")
    return district_code


async def district_in_reach(district_code: DistrictPath, actor: CurrentActor) -> str:
    """The district's own staff, or the city's, set its rule."""
    if not actor.reaches((district_code,)):
        raise NotFound(f"unknown district {district_code}")
    return district_code


# --- What a body names ----------------------------------------------------------------------------


async def site_in_reach(conn: AsyncConnection, actor: Actor, site_id: str) -> tuple[str, ...]:
    """The org path of a site a body names, if the staff actor reaches it: else the answer for a
    site dispatch does not know."""
    sites = store.sites
    path = await conn.scalar(select(sites.c.org_path).where(sites.c.site_id == site_id))
    if path is None or not actor.reaches(_path(path)):
        raise NotFound(f"dispatch does not know site {site_id} (yet)", field="site_id")
    return _path(path)


async def activity_named(conn: AsyncConnection, actor: Actor, activity_id: str) -> None:
    """An activity a body names, if the staff actor reaches it: else the answer for an unknown one."""
    table = store.activities
    path = await conn.scalar(select(table.c.org_path).where(table.c.activity_id == activity_id))
    if path is None or not actor.reaches(_path(path)):
        raise NotFound(unknown_activity(activity_id), field="activity_id")


def unknown_activity(activity_id: str) -> str:
    return f"dispatch knows no activity {activity_id}"


def community_in_reach(actor: Actor, community_code: str) -> None:
    """Staff place orders for communities they reach (a volunteer, as a resident, anywhere)."""
    if actor.is_staff and not actor.reaches(orders.org_path_of(community_code)):
        raise NotFound(f"unknown community {community_code}", field="community_code")


def answers_for(actor: Actor, who: str, field: str) -> None:
    """A volunteer answers an order for themselves, a team leader for their team; staff record
    anyone's answer (given by phone, say)."""
    if actor.role in (Role.volunteer, Role.team_leader) and who != actor.scope:
        mine = "your volunteer number" if actor.role is Role.volunteer else "your team's id"
        raise Invalid(f"answer for yourself: {field} must be {mine}", field=field)
