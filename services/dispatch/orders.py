"""Orders, pure: placing (点单), dispatching or opening for taking (派单), accepting or declining
(接单), time-outs, what follows an unanswered dispatch by itself (the next volunteers, or one level
up the practice tree), completion and rating; and the ranked, explained suggestion of volunteers
(in suggestions.py).

An order's state is folded from its events; each command returns the events it decides, none when
it changes nothing (a repeated command is harmless), or raises a refusal. Times are the caller's
`now`, the server clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.dispatch.domain import aware
from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.common import SKILLS, AgeBand, SiteLevel
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

# An automatic re-dispatch gives the next volunteers as long to answer as the previous dispatch
# gave, but never less than this: a message read on the bus home still gets an answer.
MIN_ANSWER_TIME = timedelta(minutes=10)




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
    tried: frozenset[str] = frozenset()  # every team or volunteer any dispatch of it went to
    sent_to_team: bool = False  # the last dispatch went to a team
    answer_time: timedelta | None = None  # the last dispatch's deadline minus its time
    unanswered_at: datetime | None = None  # its last dispatch ended unaccepted; it waits for staff
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
                tried=order.tried | to,
                sent_to_team=event.team_id is not None,
                answer_time=event.deadline - event.at,
                unanswered_at=None,
                deadline=event.deadline,
                dispatched_at=order.dispatched_at or event.at,
            )
        case OrderOpenedForTaking():
            return replace(
                order, status=OPEN, addressees=frozenset(), declined=frozenset(), deadline=None, unanswered_at=None
            )
        case OrderDeclined():
            declined = order.declined | {event.declined_by}
            if declined >= order.addressees and not order.accepted_by:
                return replace(order, declined=declined, status=PLACED, unanswered_at=event.at)
            return replace(order, declined=declined)
        case OrderTimedOut():
            return replace(order, status=PLACED, deadline=None, unanswered_at=event.at)
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
            return replace(
                order,
                status=PLACED,
                site_id=event.to_site_id,
                addressees=frozenset(),
                deadline=None,
                unanswered_at=None,
            )
        case OrderCancelled():
            return replace(order, status=CANCELLED, deadline=None, unanswered_at=None)
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
    time_credit_reservation: str | None = None,
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
            time_credit_reservation=time_credit_reservation,
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
    automatic: bool = False,
) -> list[Event]:
    """Send the order to one team or to named volunteers, to accept or decline by the deadline;
    `automatic` when Beacon does it by itself (see `follow_up`), not staff."""
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
            automatic=automatic,
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


def escalate(order: Order, to_site_id: str, now: datetime, *, automatic: bool = False) -> list[Event]:
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
            order_id=order.order_id,
            from_site_id=order.site_id,
            to_site_id=to_site_id,
            at=aware(now, "now"),
            automatic=automatic,
        )
    ]


def parent_site_of(level: SiteLevel, org_unit_code: str) -> tuple[SiteLevel, str] | None:
    """Where the site one level up the practice tree stands, by level and org unit: a point's
    station in its community, a station's institute in its street (the community code with the
    last three digits zeroed), an institute's centre in its district; None above a centre."""
    match level:
        case SiteLevel.point:
            return SiteLevel.station, org_unit_code[:12]
        case SiteLevel.station:
            return SiteLevel.institute, org_unit_code[:9] + "000"
        case SiteLevel.institute:
            return SiteLevel.centre, org_unit_code[:6]
    return None


def follow_up(order: Order, ranked: Sequence[str], parent_site_id: str | None, now: datetime) -> list[Event]:
    """What Beacon does by itself once a dispatch went unanswered (everyone it went to declined,
    or its deadline passed): send the order to the next volunteers of `ranked` (the suggestions,
    best first) not tried on it yet, as many as it still needs, with as long to answer as the
    last dispatch gave (at least MIN_ANSWER_TIME); when none is left, or a team had it, escalate
    it to `parent_site_id`, the site one level up. With no site above known, nothing: the order
    waits for staff and is overdue (see `overdue`)."""
    aware(now, "now")
    if order.status != PLACED or order.unanswered_at is None:
        return []  # still waiting for answers, or not dispatched yet, or staff moved it on
    needed = order.headcount - len(order.accepted_by)
    untried = [number for number in ranked if number not in order.tried]
    if not order.sent_to_team and untried and needed > 0:
        answer_time = max(order.answer_time or MIN_ANSWER_TIME, MIN_ANSWER_TIME)
        return dispatch(
            order, order.site_id, now + answer_time, now, volunteer_numbers=untried[:needed], automatic=True
        )
    if parent_site_id is None:
        return []
    return escalate(order, parent_site_id, now, automatic=True)


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
    """To list for staff: a dispatch past its deadline, an order whose dispatch went unanswered
    with nobody left to send it to and no site above (it waits for staff), an order nobody has
    accepted by the time its window starts, or an accepted order not completed by its end."""
    aware(now, "now")
    if order.status == DISPATCHED and order.deadline is not None and now >= order.deadline:
        return True
    if order.status == PLACED and order.unanswered_at is not None:
        return True
    if order.status in (PLACED, OPEN, DISPATCHED):
        return now >= order.window_start
    if order.status in (ACCEPTED, TAKEN):
        return now >= order.window_end
    return False
