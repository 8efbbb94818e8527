"""Orders' pure rules: placing, dispatching, accepting and declining, time-outs, escalation, what
follows an unanswered dispatch by itself, completion and rating, overdue orders, and the ranked
suggestion of volunteers with its reasons."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.dispatch import orders, suggestions
from services.dispatch.orders import Order
from services.dispatch.suggestions import Candidate
from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.common import AgeBand, SiteLevel
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
)

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
START, END = T0 + timedelta(days=1), T0 + timedelta(days=1, hours=2)
DEADLINE = T0 + timedelta(hours=2)
COMMUNITY = "370303001001"
STATION, INSTITUTE = "S-HEPING", "I-LUCHENG"
ANN, BOB, CAT, DAN = "V00000001", "V00000002", "V00000003", "V00000004"
TEAM, OTHER_TEAM = "T00000001", "T00000002"


def placed(**options: Any) -> list[Event]:
    args: dict[str, Any] = {
        "kind": OrderKind.order,
        "group_served": GroupServed.elderly,
        "field": "smart_help_for_elderly",
        "community_code": COMMUNITY,
        "site_id": STATION,
        "window_start": START,
        "window_end": END,
        "headcount": 1,
        "placed_via": PlacedVia.resident,
        "now": T0,
        "required_skills": ("cooking", "elder_care"),
    }
    args.update(options)
    return orders.place("O-1", **args)


def order_after(*events: Event, **options: Any) -> Order:
    order = orders.fold([*placed(**options), *events])
    assert order is not None
    return order


def then(order: Order, events: Iterable[Event]) -> Order:
    for event in events:
        order = orders.evolve(order, event)
    return order


def dispatched_to(
    order: Order, *volunteers: str, team: str | None = None, at: datetime = T0 + timedelta(minutes=10)
) -> Order:
    return then(order, orders.dispatch(order, STATION, DEADLINE, at, team_id=team, volunteer_numbers=volunteers))


def accepted(order: Order | None = None) -> Order:
    order = dispatched_to(order or order_after(), ANN)
    return then(order, orders.accept(order, ANN, T0 + timedelta(minutes=30)))


# --- Placing --------------------------------------------------------------------------------------


def test_a_placed_order_carries_its_need_but_no_personal_data() -> None:
    [event] = placed(risky=True, required_certifications=["first_aid"], min_age_band=AgeBand.from_18_to_34)
    assert isinstance(event, OrderPlaced)
    assert event.required_skills == ["cooking", "elder_care"] and event.required_certifications == ["first_aid"]
    assert event.placed_at == T0 and event.risky
    for personal in ("address", "description", "name", "phone", "comment"):
        assert personal not in OrderPlaced.model_fields
    order = orders.fold([event])
    assert order is not None and order.status == "placed" and order.attempts == 0 and order.history == ("placed",)


def test_a_micro_wish_is_an_order_kind_placed_by_community_staff() -> None:
    [event] = placed(kind=OrderKind.micro_wish, placed_via=PlacedVia.community_staff, group_served=GroupServed.children)
    assert event.kind == "micro_wish" and event.placed_via == "community_staff"


def test_an_order_window_must_end_after_it_starts() -> None:
    with pytest.raises(Invalid) as refused:
        placed(window_end=START)
    assert refused.value.field == "window_end"


def test_an_order_needs_at_least_one_volunteer() -> None:
    with pytest.raises(Invalid) as refused:
        placed(headcount=0)
    assert refused.value.field == "headcount"


def test_required_skills_must_come_from_the_taxonomy() -> None:
    with pytest.raises(Invalid) as refused:
        placed(required_skills=["cooking", "juggling"])
    assert refused.value.field == "required_skills" and refused.value.details["unknown"] == ["juggling"]


def test_the_minimum_age_may_not_be_above_the_maximum() -> None:
    with pytest.raises(Invalid) as refused:
        placed(min_age_band=AgeBand.silver, max_age_band=AgeBand.from_18_to_34)
    assert refused.value.field == "min_age_band"
    with pytest.raises(ValidationError):
        OrderPlaced(**{**placed()[0].model_dump(), "min_age_band": "60_plus", "max_age_band": "18_34"})


def test_naive_times_are_refused() -> None:
    with pytest.raises(Invalid, match="time zone"):
        placed(now=T0.replace(tzinfo=None))


# --- Dispatching, accepting, declining ------------------------------------------------------------


def test_dispatch_to_volunteers_records_the_first_attempt_and_the_time_to_dispatch() -> None:
    order = order_after()
    events = orders.dispatch(order, STATION, DEADLINE, T0 + timedelta(minutes=10), volunteer_numbers=[BOB, ANN])
    assert events == [
        OrderDispatched(
            order_id="O-1",
            volunteer_numbers=[ANN, BOB],
            site_id=STATION,
            deadline=DEADLINE,
            attempt=1,
            at=T0 + timedelta(minutes=10),
        )
    ]
    order = then(order, events)
    assert order.status == "dispatched" and order.attempts == 1 and order.addressees == {ANN, BOB}
    assert order.time_to_dispatch == timedelta(minutes=10)


def test_dispatch_goes_to_one_team_or_to_volunteers_not_both() -> None:
    order = order_after()
    with pytest.raises(Invalid):
        orders.dispatch(order, STATION, DEADLINE, T0, team_id=TEAM, volunteer_numbers=[ANN])
    with pytest.raises(Invalid):
        orders.dispatch(order, STATION, DEADLINE, T0)


def test_the_deadline_to_accept_must_be_in_the_future() -> None:
    with pytest.raises(Invalid) as refused:
        orders.dispatch(order_after(), STATION, T0, T0, volunteer_numbers=[ANN])
    assert refused.value.field == "deadline"


def test_a_dispatched_order_is_not_dispatched_again_before_an_answer() -> None:
    order = dispatched_to(order_after(), ANN)
    with pytest.raises(Conflict) as refused:
        orders.dispatch(order, STATION, DEADLINE, T0, volunteer_numbers=[BOB])
    assert refused.value.details["state"] == "dispatched"


def test_accepting_records_who_and_the_time_to_accept() -> None:
    order = dispatched_to(order_after(), ANN)
    events = orders.accept(order, ANN, T0 + timedelta(minutes=30))
    assert events == [OrderAccepted(order_id="O-1", accepted_by=ANN, attempt=1, at=T0 + timedelta(minutes=30))]
    order = then(order, events)
    assert order.status == "accepted" and order.accepted_by == (ANN,)
    assert order.time_to_accept == timedelta(minutes=20)


def test_accepting_an_order_twice_changes_nothing() -> None:
    order = accepted()
    assert orders.accept(order, ANN, T0 + timedelta(minutes=40)) == []


def test_a_team_accepts_an_order_dispatched_to_it() -> None:
    order = dispatched_to(order_after(), team=TEAM)
    order = then(order, orders.accept(order, TEAM, T0 + timedelta(minutes=15)))
    assert order.status == "accepted" and order.accepted_by == (TEAM,)
    assert orders.accept(order, TEAM, T0 + timedelta(minutes=16)) == []


def test_accepting_a_cancelled_order_is_a_conflict_naming_its_state() -> None:
    order = dispatched_to(order_after(), ANN)
    order = then(order, orders.cancel(order, "withdrawn_by_resident", T0 + timedelta(minutes=20)))
    with pytest.raises(Conflict) as refused:
        orders.accept(order, ANN, T0 + timedelta(minutes=30))
    assert refused.value.details["state"] == "cancelled"


def test_accepting_a_completed_order_is_a_conflict_naming_its_state() -> None:
    order = accepted()
    order = then(order, orders.complete(order, 1, END))
    with pytest.raises(Conflict) as refused:
        orders.accept(order, BOB, END)
    assert refused.value.details["state"] == "completed"


def test_only_those_it_was_dispatched_to_may_accept() -> None:
    order = dispatched_to(order_after(), ANN)
    with pytest.raises(Conflict) as refused:
        orders.accept(order, BOB, T0 + timedelta(minutes=20))
    assert refused.value.details["state"] == "dispatched"
    with pytest.raises(Conflict) as refused:
        orders.accept(order_after(), ANN, T0)
    assert refused.value.details["state"] == "placed"


def test_more_of_the_volunteers_sent_may_accept_up_to_the_headcount() -> None:
    order = dispatched_to(order_after(headcount=2), ANN, BOB, CAT)
    order = then(order, orders.accept(order, ANN, T0 + timedelta(minutes=20)))
    order = then(order, orders.accept(order, BOB, T0 + timedelta(minutes=25)))
    assert order.accepted_by == (ANN, BOB) and order.accepted_at == T0 + timedelta(minutes=20)
    with pytest.raises(Conflict) as refused:
        orders.accept(order, CAT, T0 + timedelta(minutes=30))
    assert refused.value.details["state"] == "accepted"


def test_when_everyone_it_went_to_declines_the_order_waits_for_redispatch() -> None:
    order = dispatched_to(order_after(), ANN, BOB)
    events = orders.decline(order, ANN, "unavailable", T0 + timedelta(minutes=20))
    assert events == [
        OrderDeclined(order_id="O-1", declined_by=ANN, reason="unavailable", attempt=1, at=T0 + timedelta(minutes=20))
    ]
    order = then(order, events)
    assert order.status == "dispatched"
    assert orders.decline(order, ANN, "unavailable", T0 + timedelta(minutes=21)) == []
    order = then(order, orders.decline(order, BOB, "too_far", T0 + timedelta(minutes=22)))
    assert order.status == "placed" and order.attempts == 1


def test_one_who_declined_may_not_then_accept() -> None:
    order = dispatched_to(order_after(), ANN, BOB)
    order = then(order, orders.decline(order, ANN, "unavailable", T0 + timedelta(minutes=20)))
    with pytest.raises(Conflict) as refused:
        orders.accept(order, ANN, T0 + timedelta(minutes=21))
    assert refused.value.details["state"] == "declined"


def test_only_those_it_was_dispatched_to_may_decline() -> None:
    with pytest.raises(Conflict):
        orders.decline(dispatched_to(order_after(), ANN), BOB, "unavailable", T0 + timedelta(minutes=20))


def test_redispatch_after_a_decline_counts_the_next_attempt_and_keeps_the_history() -> None:
    order = dispatched_to(order_after(), ANN)
    order = then(order, orders.decline(order, ANN, "unavailable", T0 + timedelta(minutes=20)))
    order = dispatched_to(order, BOB, at=T0 + timedelta(minutes=25))
    assert order.attempts == 2 and order.addressees == {BOB} and not order.declined
    assert order.time_to_dispatch == timedelta(minutes=10)  # from the first dispatch
    order = then(order, orders.accept(order, BOB, T0 + timedelta(minutes=40)))
    assert order.history == ("placed", "dispatched", "declined", "dispatched", "accepted")
    assert order.time_to_accept == timedelta(minutes=30)


# --- Deadlines and escalation ---------------------------------------------------------------------


def test_an_order_times_out_only_once_its_deadline_has_passed() -> None:
    order = dispatched_to(order_after(), ANN)
    with pytest.raises(Conflict) as refused:
        orders.time_out(order, DEADLINE - timedelta(seconds=1))
    assert refused.value.details["state"] == "dispatched" and refused.value.details["deadline"] == DEADLINE
    events = orders.time_out(order, DEADLINE)
    assert events == [OrderTimedOut(order_id="O-1", attempt=1, deadline=DEADLINE, at=DEADLINE)]
    order = then(order, events)
    assert order.status == "placed" and order.deadline is None and order.history[-1] == "timed_out"


def test_timing_out_an_order_already_answered_changes_nothing() -> None:
    assert orders.time_out(accepted(), DEADLINE + timedelta(hours=1)) == []
    assert orders.time_out(order_after(), DEADLINE + timedelta(hours=1)) == []


def test_an_order_nobody_accepted_is_escalated_to_the_site_one_level_up() -> None:
    order = dispatched_to(order_after(), ANN)
    order = then(order, orders.time_out(order, DEADLINE))
    events = orders.escalate(order, INSTITUTE, DEADLINE + timedelta(minutes=1))
    assert events == [
        OrderEscalated(order_id="O-1", from_site_id=STATION, to_site_id=INSTITUTE, at=DEADLINE + timedelta(minutes=1))
    ]
    order = then(order, events)
    assert order.site_id == INSTITUTE and order.status == "placed"
    assert orders.escalate(order, INSTITUTE, DEADLINE + timedelta(minutes=2)) == []
    order = then(
        order,
        orders.dispatch(order, INSTITUTE, DEADLINE + timedelta(hours=2), DEADLINE + timedelta(minutes=5), team_id=TEAM),
    )
    assert order.attempts == 2
    assert order.history == ("placed", "dispatched", "timed_out", "escalated", "dispatched")


def test_an_order_awaiting_an_answer_is_not_escalated() -> None:
    with pytest.raises(Conflict) as refused:
        orders.escalate(dispatched_to(order_after(), ANN), INSTITUTE, T0 + timedelta(minutes=20))
    assert refused.value.details["state"] == "dispatched"


# --- What follows an unanswered dispatch, by itself -----------------------------------------------

ANSWER_TIME = DEADLINE - (T0 + timedelta(minutes=10))  # what `dispatched_to` gives


def declined_by_all(order: Order, at: datetime = T0 + timedelta(minutes=20)) -> Order:
    for who in sorted(order.addressees):
        order = then(order, orders.decline(order, who, "unavailable", at))
    return order


def test_when_the_last_addressee_declines_the_order_goes_to_the_next_volunteer_not_yet_tried() -> None:
    order = declined_by_all(dispatched_to(order_after(), ANN))
    now = T0 + timedelta(minutes=21)
    events = orders.follow_up(order, [ANN, BOB, CAT], INSTITUTE, now)
    assert events == [
        OrderDispatched(
            order_id="O-1",
            volunteer_numbers=[BOB],
            site_id=STATION,
            deadline=now + ANSWER_TIME,  # as long to answer as the dispatch before gave
            attempt=2,
            at=now,
            automatic=True,
        )
    ]
    order = then(order, events)
    assert order.status == "dispatched" and order.addressees == {BOB} and order.tried == {ANN, BOB}
    assert order.history == ("placed", "dispatched", "declined", "dispatched")
    assert order.time_to_dispatch == timedelta(minutes=10)  # still from the first dispatch
    assert not orders.overdue(order, now)


def test_staff_dispatches_are_not_marked_automatic() -> None:
    [event] = orders.dispatch(order_after(), STATION, DEADLINE, T0, volunteer_numbers=[ANN])
    assert isinstance(event, OrderDispatched) and event.automatic is False
    # Events recorded before the field existed read as staff dispatches.
    older = event.model_dump(mode="json")
    del older["automatic"]
    assert OrderDispatched.model_validate(older).automatic is False


def test_an_automatic_redispatch_sends_as_many_as_the_headcount_still_needs() -> None:
    order = declined_by_all(dispatched_to(order_after(headcount=2), ANN, BOB))
    [event] = orders.follow_up(order, [ANN, CAT, BOB, DAN, "V00000005"], INSTITUTE, T0 + timedelta(minutes=21))
    assert isinstance(event, OrderDispatched) and event.volunteer_numbers == [CAT, DAN] and event.attempt == 2


def test_a_timed_out_dispatch_goes_to_the_next_volunteer() -> None:
    order = dispatched_to(order_after(), ANN)
    order = then(order, orders.time_out(order, DEADLINE))
    [event] = orders.follow_up(order, [ANN, BOB], INSTITUTE, DEADLINE)
    assert isinstance(event, OrderDispatched)
    assert (event.volunteer_numbers, event.attempt, event.automatic) == ([BOB], 2, True)
    order = then(order, [event])
    assert order.history == ("placed", "dispatched", "timed_out", "dispatched")


def test_the_next_volunteers_get_at_least_ten_minutes_to_answer() -> None:
    order = order_after()
    sent_at = T0 + timedelta(minutes=10)
    order = then(order, orders.dispatch(order, STATION, sent_at + timedelta(minutes=2), sent_at, volunteer_numbers=[ANN]))
    late = sent_at + timedelta(minutes=2)
    order = then(order, orders.time_out(order, late))
    [event] = orders.follow_up(order, [BOB], INSTITUTE, late)
    assert isinstance(event, OrderDispatched) and event.deadline == late + orders.MIN_ANSWER_TIME


def test_with_nobody_left_to_try_the_order_is_escalated_to_the_site_above() -> None:
    order = declined_by_all(dispatched_to(order_after(), ANN, BOB))
    now = T0 + timedelta(minutes=21)
    assert orders.overdue(order, now)  # waiting, until what follows is recorded
    events = orders.follow_up(order, [BOB, ANN], INSTITUTE, now)
    assert events == [
        OrderEscalated(order_id="O-1", from_site_id=STATION, to_site_id=INSTITUTE, at=now, automatic=True)
    ]
    order = then(order, events)
    assert order.status == "placed" and order.site_id == INSTITUTE and order.unanswered_at is None
    assert not orders.overdue(order, now)  # the institute has it, and the window is tomorrow
    assert orders.follow_up(order, [], "C-ZHANGDIAN", now) == []  # it waits for the institute's staff
    order = then(order, orders.dispatch(order, INSTITUTE, now + timedelta(hours=1), now, volunteer_numbers=[CAT]))
    assert order.attempts == 2 and order.history[-3:] == ("declined", "escalated", "dispatched")


def test_an_order_a_team_declined_or_let_time_out_goes_up_a_level_not_to_volunteers() -> None:
    for unanswered in (
        lambda o: orders.decline(o, TEAM, "unavailable", T0 + timedelta(minutes=20)),
        lambda o: orders.time_out(o, DEADLINE),
    ):
        order = dispatched_to(order_after(), team=TEAM)
        order = then(order, unanswered(order))
        [event] = orders.follow_up(order, [ANN, BOB], INSTITUTE, DEADLINE)
        assert isinstance(event, OrderEscalated) and event.to_site_id == INSTITUTE and event.automatic


def test_at_the_top_of_the_tree_the_order_stays_placed_and_is_overdue_until_staff_act() -> None:
    order = dispatched_to(order_after(), ANN)
    order = then(order, orders.time_out(order, DEADLINE))
    assert orders.follow_up(order, [ANN], None, DEADLINE) == []
    assert order.status == "placed" and order.unanswered_at == DEADLINE
    assert START > DEADLINE and orders.overdue(order, DEADLINE)  # overdue before its window starts
    order = then(order, orders.dispatch(order, STATION, START, DEADLINE, volunteer_numbers=[BOB]))
    assert not orders.overdue(order, DEADLINE)


def test_nothing_follows_while_someone_it_went_to_may_still_answer() -> None:
    order = dispatched_to(order_after(), ANN, BOB)
    order = then(order, orders.decline(order, ANN, "unavailable", T0 + timedelta(minutes=20)))
    assert orders.follow_up(order, [CAT], INSTITUTE, T0 + timedelta(minutes=21)) == []
    assert orders.follow_up(order_after(), [CAT], INSTITUTE, T0) == []  # never dispatched: staff's turn
    assert orders.follow_up(accepted(), [CAT], INSTITUTE, T0 + timedelta(minutes=40)) == []


@pytest.mark.parametrize(
    ("level", "unit", "above"),
    [
        (SiteLevel.point, "370303001001007", (SiteLevel.station, COMMUNITY)),
        (SiteLevel.point, COMMUNITY, (SiteLevel.station, COMMUNITY)),
        (SiteLevel.station, COMMUNITY, (SiteLevel.institute, "370303001000")),
        (SiteLevel.institute, "370303001000", (SiteLevel.centre, "370303")),
        (SiteLevel.centre, "370303", None),
    ],
)
def test_the_site_above_stands_on_the_parent_org_unit(level: SiteLevel, unit: str, above: object) -> None:
    assert orders.parent_site_of(level, unit) == above


# --- Open for taking (抢单) ------------------------------------------------------------------------


def test_an_open_order_is_taken_by_the_first_team() -> None:
    order = order_after()
    events = orders.open_for_taking(order, STATION, T0 + timedelta(minutes=5))
    assert events == [OrderOpenedForTaking(order_id="O-1", site_id=STATION, at=T0 + timedelta(minutes=5))]
    order = then(order, events)
    assert order.status == "open" and orders.open_for_taking(order, STATION, T0) == []
    events = orders.take(order, TEAM, T0 + timedelta(minutes=7))
    assert events == [OrderTaken(order_id="O-1", team_id=TEAM, at=T0 + timedelta(minutes=7))]
    order = then(order, events)
    assert order.status == "taken" and order.accepted_by == (TEAM,) and order.time_to_accept is None
    assert orders.take(order, TEAM, T0 + timedelta(minutes=8)) == []
    with pytest.raises(Conflict) as refused:
        orders.take(order, OTHER_TEAM, T0 + timedelta(minutes=8))
    assert refused.value.details["state"] == "taken"


def test_an_order_not_open_cannot_be_taken() -> None:
    with pytest.raises(Conflict) as refused:
        orders.take(order_after(), TEAM, T0)
    assert refused.value.details["state"] == "placed"


def test_an_open_order_may_still_be_dispatched_directly() -> None:
    order = then(order_after(), orders.open_for_taking(order_after(), STATION, T0))
    order = dispatched_to(order, team=TEAM)
    assert order.status == "dispatched" and order.attempts == 1


# --- Cancelling, completing, rating ---------------------------------------------------------------


def test_a_cancelled_order_stays_cancelled() -> None:
    order = order_after()
    events = orders.cancel(order, "duplicate", T0)
    assert events == [OrderCancelled(order_id="O-1", reason="duplicate", at=T0)]
    order = then(order, events)
    assert orders.cancel(order, "duplicate", T0) == []
    for command in (
        lambda: orders.dispatch(order, STATION, DEADLINE, T0, volunteer_numbers=[ANN]),
        lambda: orders.open_for_taking(order, STATION, T0),
        lambda: orders.take(order, TEAM, T0),
        lambda: orders.escalate(order, INSTITUTE, T0),
        lambda: orders.complete(order, 1, T0),
    ):
        with pytest.raises(Conflict) as refused:
            command()
        assert refused.value.details["state"] == "cancelled"


def test_a_completed_order_cannot_be_cancelled() -> None:
    order = then(accepted(), orders.complete(accepted(), 1, END))
    with pytest.raises(Conflict) as refused:
        orders.cancel(order, "duplicate", END)
    assert refused.value.details["state"] == "completed"


def test_completion_counts_the_people_served_once() -> None:
    order = accepted()
    events = orders.complete(order, 3, END)
    assert events == [OrderCompleted(order_id="O-1", people_served=3, at=END)]
    order = then(order, events)
    assert order.status == "completed" and order.people_served == 3
    assert orders.complete(order, 3, END) == []
    with pytest.raises(Conflict):
        orders.complete(order, 4, END)
    with pytest.raises(Invalid):
        orders.complete(accepted(), -1, END)


def test_only_an_accepted_order_is_completed() -> None:
    with pytest.raises(Conflict) as refused:
        orders.complete(dispatched_to(order_after(), ANN), 1, END)
    assert refused.value.details["state"] == "dispatched"


def test_a_completed_order_is_rated_once_from_1_to_5() -> None:
    order = then(accepted(), orders.complete(accepted(), 1, END))
    for bad in (0, 6, True):
        with pytest.raises(Invalid):
            orders.rate(order, bad, END)
    events = orders.rate(order, 5, END)
    assert events == [OrderRated(order_id="O-1", rating=5, at=END)]
    order = then(order, events)
    assert order.status == "rated" and order.rating == 5
    with pytest.raises(Conflict) as refused:
        orders.rate(order, 4, END)
    assert refused.value.details["state"] == "rated"
    assert "comment" not in OrderRated.model_fields and "comment" in (OrderRated.__doc__ or "")


def test_an_order_not_completed_cannot_be_rated() -> None:
    with pytest.raises(Conflict) as refused:
        orders.rate(accepted(), 5, END)
    assert refused.value.details["state"] == "accepted"


# --- Overdue --------------------------------------------------------------------------------------


def test_a_dispatch_past_its_deadline_is_overdue() -> None:
    order = dispatched_to(order_after(), ANN)
    assert not orders.overdue(order, DEADLINE - timedelta(seconds=1))
    assert orders.overdue(order, DEADLINE)


def test_an_order_nobody_accepted_by_its_start_is_overdue() -> None:
    order = order_after()
    assert not orders.overdue(order, START - timedelta(seconds=1))
    assert orders.overdue(order, START)


def test_an_accepted_order_not_completed_by_its_end_is_overdue() -> None:
    order = accepted()
    assert not orders.overdue(order, END - timedelta(seconds=1))
    assert orders.overdue(order, END)
    assert not orders.overdue(then(order, orders.complete(order, 1, END)), END + timedelta(days=1))
    assert not orders.overdue(then(order_after(), orders.cancel(order_after(), "duplicate", T0)), END)


# --- Suggesting volunteers ------------------------------------------------------------------------

HERE = ("370303", "370303001000", COMMUNITY)
NEXT_DOOR = ("370303", "370303001000", "370303001002")
OTHER_STREET = ("370303", "370303002000", "370303002001")
OTHER_DISTRICT = ("370305", "370305001000", "370305001001")


def volunteer(
    number: str, path: tuple[str, ...] = HERE, skills: Iterable[str] = ("cooking", "elder_care"), **options: Any
) -> Candidate:
    return Candidate(
        number,
        path,
        frozenset(skills),
        options.pop("certifications", {}),
        options.pop("age_band", AgeBand.from_35_to_59),
        **options,
    )


def test_candidates_rank_by_skill_match_then_nearness_then_recent_load() -> None:
    order = order_after()
    candidates = [
        volunteer(ANN, OTHER_DISTRICT),
        volunteer(BOB, HERE, skills=["cooking"]),
        volunteer(CAT, NEXT_DOOR, recent_load=2),
        volunteer(DAN, NEXT_DOOR, recent_load=0),
        volunteer("V00000005", HERE, recent_load=5),
    ]
    ranked = suggestions.rank(order, candidates, T0)
    assert [s.volunteer_number for s in ranked] == ["V00000005", DAN, CAT, ANN, BOB]
    assert [s.rank for s in ranked] == [1, 2, 3, 4, 5]


def test_each_suggestion_says_why() -> None:
    order = order_after(required_certifications=["first_aid"])
    candidates = [
        volunteer(ANN, NEXT_DOOR, certifications={"first_aid": None}, recent_load=2),
        volunteer(BOB, OTHER_STREET, skills=["cooking"], certifications={"first_aid": None}, recent_load=1),
        volunteer(CAT, OTHER_DISTRICT, skills=[], certifications={"first_aid": date(2030, 1, 1)}),
        volunteer(DAN, HERE, certifications={"first_aid": None}),
    ]
    reasons = {s.volunteer_number: s.reasons for s in suggestions.rank(order, candidates, T0)}
    assert reasons[DAN] == (
        "has cooking, elder_care",
        "certified first_aid",
        "same community",
        "no shifts in the last 30 days",
    )
    assert reasons[ANN] == (
        "has cooking, elder_care",
        "certified first_aid",
        "same street",
        "2 shifts in the last 30 days",
    )
    assert reasons[BOB] == (
        "has cooking",
        "lacks elder_care",
        "certified first_aid",
        "same district",
        "1 shift in the last 30 days",
    )
    assert reasons[CAT] == (
        "lacks cooking, elder_care",
        "certified first_aid",
        "elsewhere",
        "no shifts in the last 30 days",
    )


def test_ties_are_broken_by_volunteer_number() -> None:
    ranked = suggestions.rank(order_after(), [volunteer(CAT), volunteer(ANN), volunteer(BOB)], T0)
    assert [s.volunteer_number for s in ranked] == [ANN, BOB, CAT]


def test_unverified_volunteers_are_never_suggested() -> None:
    order = order_after()
    candidates = [volunteer(ANN, status="pending"), volunteer(BOB, status="suspended"), volunteer(CAT)]
    assert [s.volunteer_number for s in suggestions.rank(order, candidates, T0)] == [CAT]
    assert suggestions.excluded(order, candidates, T0) == {
        ANN: ["not verified (pending)"],
        BOB: ["not verified (suspended)"],
    }


def test_missing_or_expiring_certifications_exclude() -> None:
    order = order_after(required_certifications=["first_aid"])
    candidates = [
        volunteer(ANN),
        volunteer(BOB, certifications={"first_aid": date(2026, 5, 4)}),  # expires before the service day
        volunteer(CAT, certifications={"first_aid": date(2026, 5, 5)}),  # valid through the service day
        volunteer(DAN, certifications={"first_aid": None}),
    ]
    assert [s.volunteer_number for s in suggestions.rank(order, candidates, T0)] == [CAT, DAN]
    assert suggestions.excluded(order, candidates, T0) == {
        ANN: ["no first_aid certification"],
        BOB: ["first_aid certification expires on 2026-05-04"],
    }


def test_a_volunteer_busy_during_the_window_is_excluded() -> None:
    order = order_after()
    overlapping = volunteer(ANN, busy=((START - timedelta(hours=1), START + timedelta(minutes=1)),))
    back_to_back = volunteer(BOB, busy=((START - timedelta(hours=1), START), (END, END + timedelta(hours=1))))
    assert [s.volunteer_number for s in suggestions.rank(order, [overlapping, back_to_back], T0)] == [BOB]
    [why] = suggestions.excluded(order, [overlapping], T0)[ANN]
    assert why.startswith("busy ")


def test_a_volunteer_outside_the_age_range_is_excluded() -> None:
    order = order_after(min_age_band=AgeBand.from_18_to_34, max_age_band=AgeBand.from_35_to_59)
    candidates = [
        volunteer(ANN, age_band=AgeBand.under_18),
        volunteer(BOB, age_band=AgeBand.silver),
        volunteer(CAT, age_band=AgeBand.from_18_to_34),
    ]
    assert [s.volunteer_number for s in suggestions.rank(order, candidates, T0)] == [CAT]
    assert suggestions.excluded(order, candidates, T0) == {
        ANN: ["age band under_18 outside 18_34 to 35_59"],
        BOB: ["age band 60_plus outside 18_34 to 35_59"],
    }
    only_adults = order_after(min_age_band=AgeBand.from_18_to_34)
    assert [s.volunteer_number for s in suggestions.rank(only_adults, candidates, T0)] == [BOB, CAT]


def test_risky_work_needs_an_insurance_record() -> None:
    order = order_after(risky=True)
    candidates = [volunteer(ANN), volunteer(BOB, insured=True)]
    assert [s.volunteer_number for s in suggestions.rank(order, candidates, T0)] == [BOB]
    assert suggestions.excluded(order, candidates, T0) == {ANN: ["no insurance record for risky work"]}


def test_an_insurance_covers_an_order_only_for_its_whole_window() -> None:
    order = order_after(risky=True)  # the window is on 2026-05-05
    assert suggestions.covered(order, [(date(2026, 1, 1), date(2026, 12, 31))])
    assert suggestions.covered(order, [(date(2025, 1, 1), date(2025, 12, 31)), (date(2026, 5, 5), date(2026, 5, 5))])
    assert not suggestions.covered(order, [(date(2026, 5, 6), date(2027, 5, 5))])
    assert not suggestions.covered(order, [(date(2025, 5, 5), date(2026, 5, 4))])
    assert not suggestions.covered(order, [])


def test_every_exclusion_reason_is_given() -> None:
    order = order_after(risky=True, required_certifications=["first_aid"], max_age_band=AgeBand.from_35_to_59)
    why = suggestions.exclusions(order, volunteer(ANN, status="pending", age_band=AgeBand.silver), T0)
    assert why == [
        "not verified (pending)",
        "no first_aid certification",
        "no insurance record for risky work",
        "age band 60_plus outside under_18 to 35_59",
    ]
