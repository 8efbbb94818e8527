"""Activities and shifts, pure: recurrence in the city's time, posts, capacity and the waiting list,
withdrawal and promotion, cancellation naming whom to tell, completion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.dispatch import activities
from shared.errors import Conflict, Invalid
from shared.events.dispatch import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityKind,
    GroupServed,
    Post,
    ShiftCancelled,
    ShiftPosition,
    SignUpWithdrawn,
    WaitlistPromoted,
)

CITY = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2027, 2, 11, 20, 0, tzinfo=CITY)
BEFORE = NIGHT.astimezone(UTC) - timedelta(days=3)


def activity(**changes: object) -> activities.Activity:
    values: dict[str, object] = {
        "site_id": "ST-1",
        "kind": ActivityKind.festival,
        "theme": "lantern_festival",
        "field": "civilised_traffic",
        "group_served": GroupServed.public_needs,
        "starts_on": date(2027, 2, 11),
        "ends_on": date(2027, 3, 12),
        "posts": [Post(post_id="east_gate")],
        **changes,
    }
    folded = activities.fold_activity(activities.schedule("A1", **values))  # type: ignore[arg-type]
    assert folded is not None
    return folded


def shift(capacity: int = 2) -> activities.ShiftState:
    planned = activities.occurrences(NIGHT, NIGHT + timedelta(hours=2), 1, 1)
    state = activities.fold_shift(activities.open_shifts(activity(), ["SH1"], planned, capacity=capacity, now=BEFORE))
    assert state is not None
    return state


def apply(state: activities.ShiftState, events: list) -> activities.ShiftState:
    for event in events:
        state = activities.evolve_shift(state, event)
    return state


def test_occurrences_keep_the_city_wall_clock_time_every_day() -> None:
    planned = activities.occurrences(NIGHT, NIGHT + timedelta(hours=2), every_days=1, count=30)
    assert len(planned) == 30
    assert {(o.starts_at.astimezone(CITY).hour, (o.ends_at - o.starts_at)) for o in planned} == {(20, timedelta(hours=2))}
    assert planned[-1].starts_at.astimezone(CITY).date() == date(2027, 3, 12)
    weekly = activities.occurrences(NIGHT, NIGHT + timedelta(hours=2), every_days=7, count=3)
    assert [o.starts_at.astimezone(CITY).date() for o in weekly] == [date(2027, 2, 11), date(2027, 2, 18), date(2027, 2, 25)]


@pytest.mark.parametrize(
    ("start", "end", "every", "count", "field"),
    [
        (NIGHT, NIGHT, 1, 1, "ends_at"),
        (NIGHT, NIGHT + timedelta(hours=2), 1, 0, "count"),
        (NIGHT, NIGHT + timedelta(hours=2), 1, 367, "count"),
        (NIGHT, NIGHT + timedelta(hours=2), 0, 2, "every_days"),
        (NIGHT, NIGHT + timedelta(hours=30), 1, 2, "ends_at"),  # would overlap the next night
    ],
)
def test_a_recurrence_that_cannot_be_is_refused_naming_the_field(start, end, every, count, field) -> None:
    with pytest.raises(Invalid) as refused:
        activities.occurrences(start, end, every, count)
    assert refused.value.field == field


def test_scheduling_checks_posts_skills_and_the_order_link() -> None:
    with pytest.raises(Invalid, match="own code"):
        activity(posts=[Post(post_id="a"), Post(post_id="a")])
    with pytest.raises(Invalid, match="juggling"):
        activity(posts=[Post(post_id="a", required_skills=["juggling"])])
    with pytest.raises(Invalid) as refused:
        activity(kind=ActivityKind.from_order)
    assert refused.value.field == "order_id"
    with pytest.raises(Invalid):
        activity(ends_on=date(2027, 2, 10))
    assert activity(kind=ActivityKind.from_order, order_id="O1").kind == ActivityKind.from_order


def test_shifts_open_only_within_the_activity_for_its_own_posts() -> None:
    planned = activities.occurrences(NIGHT, NIGHT + timedelta(hours=2), 1, 31)
    with pytest.raises(Invalid, match="outside the activity"):
        activities.open_shifts(activity(), [f"SH{n}" for n in range(31)], planned, capacity=1, now=BEFORE)
    with pytest.raises(Invalid) as refused:
        activities.open_shifts(activity(), ["SH1"], planned[:1], capacity=1, now=BEFORE, post_id="west_gate")
    assert refused.value.field == "post_id"
    opened = activities.open_shifts(activity(), ["SH1", "SH2"], planned[:2], capacity=5, now=BEFORE, post_id="east_gate")
    assert [(e.shift_id, e.series_id, e.post_id) for e in opened] == [("SH1", "SH1", "east_gate"), ("SH2", "SH1", "east_gate")]


def test_sign_ups_fill_the_places_then_the_waiting_list_in_order_and_repeat_harmlessly() -> None:
    state = shift(capacity=2)
    for number in ("V00000001", "V00000002", "V00000003", "V00000004"):
        state = apply(state, activities.sign_up(state, number, BEFORE))
    assert (state.confirmed, state.waitlist) == (("V00000001", "V00000002"), ("V00000003", "V00000004"))
    assert activities.sign_up(state, "V00000003", BEFORE) == []
    assert state.position_of("V00000003") == ShiftPosition.waitlisted and state.position_of("V00000009") is None


def test_withdrawing_a_place_promotes_the_first_waiting_and_marks_a_late_withdrawal() -> None:
    state = shift(capacity=1)
    for number in ("V00000001", "V00000002", "V00000003"):
        state = apply(state, activities.sign_up(state, number, BEFORE))
    early = activities.withdraw(state, "V00000001", BEFORE)
    assert [type(e) for e in early] == [SignUpWithdrawn, WaitlistPromoted]
    assert early[0].late is False and early[1].volunteer_number == "V00000002"
    state = apply(state, early)
    assert (state.confirmed, state.waitlist) == (("V00000002",), ("V00000003",))
    late = activities.withdraw(state, "V00000003", NIGHT - timedelta(hours=2))
    assert [type(e) for e in late] == [SignUpWithdrawn] and late[0].late is True  # a waiting one frees no place
    assert activities.withdraw(apply(state, late), "V00000003", BEFORE) == []


def test_a_cancelled_or_ended_shift_takes_no_sign_up_and_cancelling_names_everyone() -> None:
    state = shift(capacity=1)
    for number in ("V00000001", "V00000002"):
        state = apply(state, activities.sign_up(state, number, BEFORE))
    (cancelled,) = activities.cancel_shift(state, "heavy_snow", BEFORE)
    assert isinstance(cancelled, ShiftCancelled) and cancelled.notified == ["V00000001", "V00000002"]
    state = apply(state, [cancelled])
    assert activities.cancel_shift(state, "heavy_snow", BEFORE) == []
    with pytest.raises(Conflict) as refused:
        activities.sign_up(state, "V00000003", BEFORE)
    assert refused.value.details["state"] == "cancelled"
    with pytest.raises(Conflict) as ended:
        activities.sign_up(shift(), "V00000003", NIGHT + timedelta(hours=2))
    assert ended.value.details["state"] == "ended"


def test_an_activity_completes_once_with_the_people_served_and_a_cancelled_one_does_not() -> None:
    scheduled = activity()
    (done,) = activities.complete(scheduled, 300, BEFORE)
    assert isinstance(done, ActivityCompleted) and done.people_served == 300
    completed = activities.evolve_activity(scheduled, done)
    assert activities.complete(completed, 300, BEFORE) == []
    with pytest.raises(Conflict):
        activities.complete(completed, 301, BEFORE)
    with pytest.raises(Invalid):
        activities.complete(scheduled, -1, BEFORE)
    (cancel,) = activities.cancel(scheduled, "heavy_snow", BEFORE)
    assert isinstance(cancel, ActivityCancelled)
    with pytest.raises(Conflict):
        activities.cancel(completed, "heavy_snow", BEFORE)
