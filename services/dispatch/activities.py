"""Activities and their shifts, pure: scheduling (on its own or to serve an order), posts, shifts
that recur day after day, sign-up with a capacity and a waiting list, withdrawal that promotes
the first one waiting, cancellation that names whom to notify, and completion.

States are folded from events; each command returns the events it decides, none when it changes
nothing (a repeated command is harmless), or raises a refusal. Times are the caller's `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from services.dispatch.attendance import Shift
from services.dispatch.domain import aware
from shared.catalog import Event
from shared.citytime import CITY_ZONE, city_date  # noqa: F401  (re-exported to dispatch's modules)
from shared.errors import Conflict, Invalid
from shared.events.common import SKILLS
from shared.events.dispatch import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityKind,
    ActivityScheduled,
    Geofence,
    GroupServed,
    Post,
    ShiftCancelled,
    ShiftOpened,
    ShiftPosition,
    SignUpWithdrawn,
    VolunteerSignedUp,
    WaitlistPromoted,
)

MAX_OCCURRENCES = 366  # a recurrence spans at most a year
LATE_WITHDRAWAL = timedelta(hours=24)  # withdrawing closer to the start than this is marked late

SCHEDULED, COMPLETED, CANCELLED = "scheduled", "completed", "cancelled"
OPEN = "open"





# --- Activities -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    activity_id: str
    site_id: str
    kind: ActivityKind
    starts_on: date
    ends_on: date
    posts: tuple[Post, ...]
    status: str = SCHEDULED
    people_served: int | None = None

    def post(self, post_id: str | None) -> Post | None:
        return next((p for p in self.posts if p.post_id == post_id), None)


def evolve_activity(activity: Activity | None, event: Event) -> Activity:
    if isinstance(event, ActivityScheduled):
        return Activity(
            event.activity_id, event.site_id, event.kind, event.starts_on, event.ends_on, tuple(event.posts)
        )
    assert activity is not None, f"{type(event).__name__} before the activity was scheduled"
    match event:
        case ActivityCompleted():
            return replace(activity, status=COMPLETED, people_served=event.people_served)
        case ActivityCancelled():
            return replace(activity, status=CANCELLED)
    return activity


def fold_activity(history: Iterable[Event], activity: Activity | None = None) -> Activity | None:
    for event in history:
        activity = evolve_activity(activity, event)
    return activity


def schedule(
    activity_id: str,
    *,
    site_id: str,
    kind: ActivityKind,
    theme: str,
    field: str,
    group_served: GroupServed,
    starts_on: date,
    ends_on: date,
    posts: Sequence[Post] = (),
    order_id: str | None = None,
    brand_team_id: str | None = None,
) -> list[Event]:
    if ends_on < starts_on:
        raise Invalid("an activity ends on or after the day it starts", field="ends_on")
    if (kind == ActivityKind.from_order) != (order_id is not None):
        raise Invalid("an activity serves an order exactly when its kind is from_order", field="order_id")
    ids = [p.post_id for p in posts]
    if len(set(ids)) != len(ids):
        raise Invalid("each post of an activity has its own code", field="posts")
    unknown = sorted({s for p in posts for s in p.required_skills} - SKILLS)
    if unknown:
        raise Invalid(f"not skills Beacon matches on: {', '.join(unknown)}", field="posts", unknown=unknown)
    return [
        ActivityScheduled(
            activity_id=activity_id,
            site_id=site_id,
            kind=kind,
            theme=theme,
            field=field,
            group_served=group_served,
            order_id=order_id,
            brand_team_id=brand_team_id,
            posts=list(posts),
            starts_on=starts_on,
            ends_on=ends_on,
        )
    ]


def _refuse_unless_scheduled(activity: Activity, doing: str) -> None:
    if activity.status != SCHEDULED:
        raise Conflict(f"activity {activity.activity_id} is {activity.status}: cannot {doing}", state=activity.status)


@dataclass(frozen=True)
class Occurrence:
    starts_at: datetime
    ends_at: datetime


def occurrences(starts_at: datetime, ends_at: datetime, every_days: int, count: int) -> list[Occurrence]:
    """A shift and its repetitions: `count` shifts, each `every_days` after the previous, at the
    same wall-clock time in the city (20:00–22:00 stays 20:00–22:00)."""
    aware(starts_at, "starts_at")
    aware(ends_at, "ends_at")
    if ends_at <= starts_at:
        raise Invalid("a shift ends after it starts", field="ends_at")
    if not 1 <= count <= MAX_OCCURRENCES:
        raise Invalid(f"a recurrence has 1 to {MAX_OCCURRENCES} shifts", field="count")
    if every_days < 1:
        raise Invalid("shifts recur at least a day apart", field="every_days")
    if count > 1 and ends_at - starts_at > timedelta(days=every_days):
        raise Invalid("a recurring shift may not overlap the next one", field="ends_at")
    start, end = starts_at.astimezone(CITY_ZONE), ends_at.astimezone(CITY_ZONE)
    result = []
    for n in range(count):
        shift = timedelta(days=n * every_days)
        # Wall-clock arithmetic in the city's zone, then back to an absolute time.
        local_start = (start.replace(tzinfo=None) + shift).replace(tzinfo=CITY_ZONE)
        local_end = (end.replace(tzinfo=None) + shift).replace(tzinfo=CITY_ZONE)
        result.append(Occurrence(local_start, local_end))
    return result


def open_shifts(
    activity: Activity,
    shift_ids: Sequence[str],
    planned: Sequence[Occurrence],
    *,
    capacity: int,
    now: datetime,
    post_id: str | None = None,
    geofence: Geofence | None = None,
) -> list[Event]:
    """One ShiftOpened per occurrence, sharing a series id (the first shift's) when they recur."""
    aware(now, "now")
    _refuse_unless_scheduled(activity, "open shifts")
    if len(shift_ids) != len(planned):
        raise ValueError("one shift id per occurrence")
    if post_id is not None and activity.post(post_id) is None:
        raise Invalid(f"activity {activity.activity_id} has no post {post_id}", field="post_id")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise Invalid("a shift needs at least one volunteer", field="capacity")
    for occurrence in planned:
        day = city_date(occurrence.starts_at)
        if not activity.starts_on <= day <= activity.ends_on:
            raise Invalid(
                f"a shift on {day.isoformat()} falls outside the activity's dates "
                f"({activity.starts_on.isoformat()} to {activity.ends_on.isoformat()})",
                field="starts_at",
            )
        if occurrence.ends_at <= now:
            raise Invalid("a shift is opened before it ends", field="starts_at")
    series_id = shift_ids[0] if len(shift_ids) > 1 else None
    return [
        ShiftOpened(
            shift_id=shift_id,
            activity_id=activity.activity_id,
            site_id=activity.site_id,
            post_id=post_id,
            series_id=series_id,
            starts_at=occurrence.starts_at,
            ends_at=occurrence.ends_at,
            capacity=capacity,
            geofence=geofence,
        )
        for shift_id, occurrence in zip(shift_ids, planned, strict=True)
    ]


def complete(activity: Activity, people_served: int, now: datetime) -> list[Event]:
    if isinstance(people_served, bool) or not isinstance(people_served, int) or people_served < 0:
        raise Invalid("people served is a whole number, zero or more", field="people_served")
    if activity.status == COMPLETED and activity.people_served == people_served:
        return []
    _refuse_unless_scheduled(activity, "complete it")
    return [ActivityCompleted(activity_id=activity.activity_id, people_served=people_served, at=aware(now, "now"))]


def cancel(activity: Activity, reason: str, now: datetime) -> list[Event]:
    """The activity itself; the handler cancels its shifts still to come (cancel_shift)."""
    if activity.status == CANCELLED:
        return []
    _refuse_unless_scheduled(activity, "cancel it")
    return [ActivityCancelled(activity_id=activity.activity_id, reason=reason, at=aware(now, "now"))]


# --- Shifts and sign-ups --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftState:
    shift: Shift
    activity_id: str
    status: str = OPEN
    confirmed: tuple[str, ...] = ()  # in order of sign-up
    waitlist: tuple[str, ...] = ()  # in order of sign-up

    def position_of(self, volunteer_number: str) -> ShiftPosition | None:
        if volunteer_number in self.confirmed:
            return ShiftPosition.confirmed
        if volunteer_number in self.waitlist:
            return ShiftPosition.waitlisted
        return None


def evolve_shift(state: ShiftState | None, event: Event) -> ShiftState:
    if isinstance(event, ShiftOpened):
        return ShiftState(Shift.of(event), event.activity_id)
    assert state is not None, f"{type(event).__name__} before the shift was opened"
    match event:
        case VolunteerSignedUp(position=ShiftPosition.confirmed):
            return replace(state, confirmed=(*state.confirmed, event.volunteer_number))
        case VolunteerSignedUp():
            return replace(state, waitlist=(*state.waitlist, event.volunteer_number))
        case SignUpWithdrawn():
            number = event.volunteer_number
            return replace(
                state,
                confirmed=tuple(n for n in state.confirmed if n != number),
                waitlist=tuple(n for n in state.waitlist if n != number),
            )
        case WaitlistPromoted():
            number = event.volunteer_number
            return replace(
                state, confirmed=(*state.confirmed, number), waitlist=tuple(n for n in state.waitlist if n != number)
            )
        case ShiftCancelled():
            return replace(state, status=CANCELLED)
    return state


def fold_shift(history: Iterable[Event]) -> ShiftState | None:
    state: ShiftState | None = None
    for event in history:
        state = evolve_shift(state, event)
    return state


def _refuse_closed(state: ShiftState, now: datetime, doing: str) -> None:
    if state.status == CANCELLED:
        raise Conflict(f"shift {state.shift.shift_id} is cancelled: cannot {doing}", state=CANCELLED)
    if now >= state.shift.ends_at:
        raise Conflict(f"shift {state.shift.shift_id} has ended: cannot {doing}", state="ended")


def sign_up(state: ShiftState, volunteer_number: str, now: datetime) -> list[Event]:
    """A place while the shift has room, else the end of the waiting list; again changes nothing."""
    aware(now, "now")
    if state.position_of(volunteer_number) is not None:
        return []
    _refuse_closed(state, now, "sign up")
    room = len(state.confirmed) < state.shift.capacity
    position = ShiftPosition.confirmed if room else ShiftPosition.waitlisted
    return [
        VolunteerSignedUp(shift_id=state.shift.shift_id, volunteer_number=volunteer_number, position=position, at=now)
    ]


def withdraw(state: ShiftState, volunteer_number: str, now: datetime) -> list[Event]:
    """Withdraw a sign-up; a confirmed place freed before the end goes to the first one waiting."""
    aware(now, "now")
    position = state.position_of(volunteer_number)
    if position is None:
        return []
    _refuse_closed(state, now, "withdraw")
    shift = state.shift
    late = shift.starts_at - now < LATE_WITHDRAWAL
    events: list[Event] = [SignUpWithdrawn(shift_id=shift.shift_id, volunteer_number=volunteer_number, late=late, at=now)]
    if position == ShiftPosition.confirmed and state.waitlist:
        events.append(WaitlistPromoted(shift_id=shift.shift_id, volunteer_number=state.waitlist[0], at=now))
    return events


def cancel_shift(state: ShiftState, reason: str, now: datetime) -> list[Event]:
    """Cancel a shift still to come, naming everyone signed up: they are told."""
    aware(now, "now")
    if state.status == CANCELLED:
        return []
    if now >= state.shift.ends_at:
        raise Conflict(f"shift {state.shift.shift_id} has ended: cannot cancel it", state="ended")
    return [
        ShiftCancelled(
            shift_id=state.shift.shift_id,
            activity_id=state.activity_id,
            reason=reason,
            notified=[*state.confirmed, *state.waitlist],
            at=now,
        )
    ]
