"""Orders, pure: placing (点单), dispatching or opening for taking (派单), accepting or declining
(接单), time-outs and escalation, completion and rating; and the ranked, explained suggestion of
volunteers (in suggestions.py).

An order's state is folded from its events; each command returns the events it decides, none when
it changes nothing (a repeated command is harmless), or raises a refusal. Times are the caller's
`now`, the server clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.common import SKILLS, AgeBand
from shared.events.dispatch import (
    GroupServed,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderDeclined,
    OrderDispatched,
    OrderEscalated,
    OrderKind,
    OrderOpenedForTaking,
    OrderPlaced,
    OrderRated,
    OrderTaken,
    OrderTimedOut,
    PlacedVia,
    Urgency,
)

# Statuses. "placed" is also where a declined or timed-out order waits to be dispatched again.
PLACED, DISPATCHED, OPEN, ACCEPTED, TAKEN, COMPLETED, RATED, CANCELLED = (
    "placed",
    "dispatched",
    "open",
    "accepted",
    "taken",
    "completed",
    "rated",
    "cancelled",
)
_FINISHED = {COMPLETED, RATED, CANCELLED}
AGES = list(AgeBand)


def aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone (the server clock, in UTC)")
    return at


@dataclass(frozen=True)
class Order:
    order_id: str
    site_id: str  # the site that owns it now: the community's, or higher after escalation
    community_code: str
    window_start: datetime
    window_end: datetime
    headcount: int
    required_skills: tuple[str, ...]
    required_certifications: tuple[str, ...]
    min_age_band: AgeBand | None
    max_age_band: AgeBand | None
    risky: bool
    placed_at: datetime
    status: str = PLACED
    attempts: int = 0  # dispatches so far
    addressees: frozenset[str] = frozenset()  # the current dispatch's team or volunteers
    declined: frozenset[str] = frozenset()  # of the current dispatch
    accepted_by: tuple[str, ...] = ()
    deadline: datetime | None = None
    dispatched_at: datetime | None = None  # the first dispatch, for the time to dispatch
    accepted_at: datetime | None = None  # the first acceptance, for the time to accept
    people_served: int | None = None
    rating: int | None = None
    history: tuple[str, ...] = ("placed",)
    version: int = 1

    @property
    def time_to_dispatch(self) -> timedelta | None:
        return None if self.dispatched_at is None else self.dispatched_at - self.placed_at

    @property
    def time_to_accept(self) -> timedelta | None:
        if self.accepted_at is None or self.dispatched_at is None:
            return None
        return self.accepted_at - self.dispatched_at

    @property
    def org_path(self) -> tuple[str, ...]:
        return org_path_of(self.community_code)


def org_path_of(community_code: str) -> tuple[str, ...]:
    """District, street and community codes of a 12-digit community code (the division-code scheme)."""
    code = community_code[:12]
    return (code[:6], code[:9] + "000", code)


def fold(history: Iterable[Event]) -> Order | None:
    order: Order | None = None
    for event in history:
        order = evolve(order, event)
    return order


def evolve(order: Order | None, event: Event) -> Order:
    if isinstance(event, OrderPlaced):
        return Order(
            event.order_id,
            event.site_id,
            event.community_code,
            event.window_start,
            event.window_end,
            event.headcount,
            tuple(event.required_skills),
            tuple(event.required_certifications),
            event.min_age_band,
            event.max_age_band,
            event.risky,
            event.placed_at,
        )
    assert order is not None, f"{type(event).__name__} before the order was placed"
    step = type(event).spec.action
    order = replace(order, version=order.version + 1, history=(*order.history, step))
    match event:
        case OrderDispatched():
            to = {event.team_id} if event.team_id else set(event.volunteer_numbers)
            return replace(
                order,
                status=DISPATCHED,
                attempts=event.attempt,
                addressees=frozenset(to),
                declined=frozenset(),
                deadline=event.deadline,
                dispatched_at=order.dispatched_at or event.at,
            )
        case OrderOpenedForTaking():
            return replace(order, status=OPEN, addressees=frozenset(), declined=frozenset(), deadline=None)
        case OrderDeclined():
            declined = order.declined | {event.declined_by}
            everyone = declined >= order.addressees and not order.accepted_by
            return replace(order, declined=declined, status=PLACED if everyone else order.status)
        case OrderTimedOut():
            return replace(order, status=PLACED, deadline=None)
        case OrderAccepted():
            return replace(
                order,
                status=ACCEPTED,
                accepted_by=(*order.accepted_by, event.accepted_by),
                accepted_at=order.accepted_at or event.at,
            )
        case OrderTaken():
            return replace(order, status=TAKEN, accepted_by=(event.team_id,), accepted_at=order.accepted_at or event.at)
        case OrderEscalated():
            return replace(order, status=PLACED, site_id=event.to_site_id, addressees=frozenset(), deadline=None)
        case OrderCancelled():
            return replace(order, status=CANCELLED, deadline=None)
        case OrderCompleted():
            return replace(order, status=COMPLETED, people_served=event.people_served)
        case OrderRated():
            return replace(order, status=RATED, rating=event.rating)
    return order


# --- Commands -------------------------------------------------------------------------------------


def place(
    order_id: str,
    *,
    kind: OrderKind,
    group_served: GroupServed,
    field: str,
    community_code: str,
    site_id: str,
    window_start: datetime,
    window_end: datetime,
    headcount: int,
    placed_via: PlacedVia,
    now: datetime,
    required_skills: Sequence[str] = (),
    required_certifications: Sequence[str] = (),
    min_age_band: AgeBand | None = None,
    max_age_band: AgeBand | None = None,
    urgency: Urgency = Urgency.normal,
    risky: bool = False,
) -> list[Event]:
    aware(now, "now")
    aware(window_start, "window_start")
    aware(window_end, "window_end")
    if window_end <= window_start:
        raise Invalid("the time window must end after it starts", field="window_end")
    if isinstance(headcount, bool) or not isinstance(headcount, int) or headcount < 1:
        raise Invalid("an order needs at least one volunteer", field="headcount")
    unknown = sorted(set(required_skills) - SKILLS)
    if unknown:
        raise Invalid(f"not skills Beacon matches on: {', '.join(unknown)}", field="required_skills", unknown=unknown)
    if min_age_band and max_age_band and AGES.index(min_age_band) > AGES.index(max_age_band):
        raise Invalid("the minimum age is above the maximum", field="min_age_band")
    return [
        OrderPlaced(
            order_id=order_id,
            kind=kind,
            group_served=group_served,
            field=field,
            community_code=community_code,
            site_id=site_id,
            window_start=window_start,
            window_end=window_end,
            headcount=headcount,
            required_skills=sorted(set(required_skills)),
            required_certifications=sorted(set(required_certifications)),
            min_age_band=min_age_band,
            max_age_band=max_age_band,
            urgency=urgency,
            risky=risky,
            placed_via=placed_via,
            placed_at=now,
        )
    ]


def _refuse_finished(order: Order, doing: str) -> None:
    if order.status in _FINISHED:
        raise Conflict(f"order {order.order_id} is {order.status}: cannot {doing}", state=order.status)


def dispatch(
    order: Order,
    site_id: str,
    deadline: datetime,
    now: datetime,
    *,
    team_id: str | None = None,
    volunteer_numbers: Sequence[str] = (),
) -> list[Event]:
    """Send the order to one team or to named volunteers, to accept or decline by the deadline."""
    aware(now, "now")
    _refuse_finished(order, "dispatch it")
    if (team_id is None) == (not volunteer_numbers):
        raise Invalid("dispatch to one team or to volunteers", field="team_id")
    if aware(deadline, "deadline") <= now:
        raise Invalid("the deadline to accept must be in the future", field="deadline")
    if order.status not in (PLACED, OPEN):
        raise Conflict(f"order {order.order_id} is already {order.status}", state=order.status)
    return [
        OrderDispatched(
            order_id=order.order_id,
            team_id=team_id,
            volunteer_numbers=sorted(set(volunteer_numbers)),
            site_id=site_id,
            deadline=deadline,
            attempt=order.attempts + 1,
            at=now,
        )
    ]


def open_for_taking(order: Order, site_id: str, now: datetime) -> list[Event]:
    _refuse_finished(order, "open it for taking")
    if order.status == OPEN:
        return []
    if order.status != PLACED:
        raise Conflict(f"order {order.order_id} is already {order.status}", state=order.status)
    return [OrderOpenedForTaking(order_id=order.order_id, site_id=site_id, at=aware(now, "now"))]


def _addressed(order: Order, who: str) -> None:
    if order.status != DISPATCHED or who not in order.addressees:
        raise Conflict(f"order {order.order_id} is not dispatched to {who}", state=order.status)


def decline(order: Order, who: str, reason: str, now: datetime) -> list[Event]:
    if order.status == DISPATCHED and who in order.declined:
        return []
    _refuse_finished(order, "decline it")
    _addressed(order, who)
    return [
        OrderDeclined(
            order_id=order.order_id, declined_by=who, reason=reason, attempt=order.attempts, at=aware(now, "now")
        )
    ]


def time_out(order: Order, now: datetime) -> list[Event]:
    """Past the deadline with nobody's acceptance, the order waits to be dispatched again."""
    aware(now, "now")
    if order.status != DISPATCHED:
        return []  # accepted, declined or cancelled meanwhile: nothing is waiting
    assert order.deadline is not None
    if now < order.deadline:
        raise Conflict(
            f"order {order.order_id} has until {order.deadline.isoformat()} to be accepted",
            state=order.status,
            deadline=order.deadline,
        )
    return [OrderTimedOut(order_id=order.order_id, attempt=order.attempts, deadline=order.deadline, at=now)]


def accept(order: Order, who: str, now: datetime) -> list[Event]:
    if who in order.accepted_by and order.status in (ACCEPTED, TAKEN):
        return []
    _refuse_finished(order, "accept it")
    if order.status == ACCEPTED and who in order.addressees and len(order.accepted_by) < order.headcount:
        pass  # another of the volunteers it was sent to joins
    else:
        _addressed(order, who)
        if who in order.declined:
            raise Conflict(f"{who} declined order {order.order_id}", state="declined")
    return [OrderAccepted(order_id=order.order_id, accepted_by=who, attempt=order.attempts, at=aware(now, "now"))]


def take(order: Order, team_id: str, now: datetime) -> list[Event]:
    if order.status == TAKEN and order.accepted_by == (team_id,):
        return []
    _refuse_finished(order, "take it")
    if order.status != OPEN:
        raise Conflict(f"order {order.order_id} is not open for taking", state=order.status)
    return [OrderTaken(order_id=order.order_id, team_id=team_id, at=aware(now, "now"))]


def escalate(order: Order, to_site_id: str, now: datetime) -> list[Event]:
    """Up one level of the practice tree: the higher site owns and dispatches the order from now."""
    _refuse_finished(order, "escalate it")
    if order.status not in (PLACED, OPEN):
        raise Conflict(
            f"order {order.order_id} is {order.status}: wait for a decline or the deadline", state=order.status
        )
    if to_site_id == order.site_id:
        return []
    return [
        OrderEscalated(
            order_id=order.order_id, from_site_id=order.site_id, to_site_id=to_site_id, at=aware(now, "now")
        )
    ]


def cancel(order: Order, reason: str, now: datetime) -> list[Event]:
    if order.status == CANCELLED:
        return []
    _refuse_finished(order, "cancel it")
    return [OrderCancelled(order_id=order.order_id, reason=reason, at=aware(now, "now"))]


def complete(order: Order, people_served: int, now: datetime) -> list[Event]:
    if isinstance(people_served, bool) or not isinstance(people_served, int) or people_served < 0:
        raise Invalid("people served is a whole number, zero or more", field="people_served")
    if order.status in (COMPLETED, RATED) and order.people_served == people_served:
        return []
    if order.status not in (ACCEPTED, TAKEN):
        raise Conflict(
            f"order {order.order_id} is {order.status}: only an accepted order is completed", state=order.status
        )
    return [OrderCompleted(order_id=order.order_id, people_served=people_served, at=aware(now, "now"))]


def rate(order: Order, rating: int, now: datetime) -> list[Event]:
    """The resident's 1–5 rating; their comment, if any, is kept by the caller, never in the event."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise Invalid("a rating is 1 to 5", field="rating")
    if order.status == RATED:
        raise Conflict(f"order {order.order_id} is already rated", state=RATED)
    if order.status != COMPLETED:
        raise Conflict(f"order {order.order_id} is {order.status}: only a completed order is rated", state=order.status)
    return [OrderRated(order_id=order.order_id, rating=rating, at=aware(now, "now"))]


def overdue(order: Order, now: datetime) -> bool:
    """To list for staff: a dispatch past its deadline, an order nobody has accepted by the time
    its window starts, or an accepted order not completed by the end of its window."""
    aware(now, "now")
    if order.status == DISPATCHED and order.deadline is not None and now >= order.deadline:
        return True
    if order.status in (PLACED, OPEN, DISPATCHED):
        return now >= order.window_start
    if order.status in (ACCEPTED, TAKEN):
        return now >= order.window_end
    return False
