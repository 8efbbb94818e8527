"""Service records' pure rules: drawing up from attendance or an administrator's entry, rounding by
the district's rule in force at the service's start, confirmation (with other minutes and a
reason), decline, adjustment that reverses and restates, revocation, the volunteer's correction
requests and their outcome; refusals with their field or state, repeats that change nothing, and
the counted-hours arithmetic points will rely on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.dispatch import records
from services.dispatch.attendance import DEFAULT_ROUNDING, RoundingRule
from services.dispatch.records import (
    CONFIRMED,
    CORRECTION_REQUESTED,
    DECLINED,
    NO_OPEN_REQUEST,
    RECORDED,
    REVOKED,
    RoundingSchedule,
    ServiceRecord,
)
from shared.catalog import Event, catalog
from shared.errors import Conflict, Invalid
from shared.events.dispatch import (
    CorrectionDecided,
    CorrectionOutcome,
    CorrectionRequested,
    RecordSource,
    RoundingRuleSet,
    ServiceHoursAdjusted,
    ServiceHoursConfirmed,
    ServiceHoursRevoked,
    ServiceRecordDeclined,
    ServiceRecorded,
)

# The lantern festival: 20:00–22:00 in the city is 12:00–14:00 UTC.
START = datetime(2026, 2, 12, 12, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
NOW = END + timedelta(hours=1)
ANN, BOB = "V00000001", "V00000002"
RECORD_ID = "R00000001"
DISTRICT = "370303"
# A district that counts every started half hour as half an hour.
HALVES = RoundingRule(((1, Decimal(0)), (31, Decimal("0.5")), (60, Decimal(1))))


def drawn(minutes: int = 120, *, rule: RoundingRule = DEFAULT_ROUNDING, **changes: Any) -> list[Event]:
    args: dict[str, Any] = {
        "volunteer_number": ANN,
        "activity_id": "A00000001",
        "shift_id": "SH00000001",
        "site_id": "ST-DENGHUI",
        "field": "civilised_traffic",
        "group_served": "public_needs",
        "source": RecordSource.attendance,
        "started_at": START,
        "ended_at": END,
        "minutes": minutes,
        "rule": rule,
    }
    args.update(changes)
    return records.draw_up(RECORD_ID, **args)


def state(events: Iterable[Event]) -> ServiceRecord:
    record = records.fold(events)
    assert record is not None
    return record


def after(record: ServiceRecord, events: Iterable[Event]) -> ServiceRecord:
    for event in events:
        record = records.evolve(record, event)
    return record


def waiting(minutes: int = 120, **changes: Any) -> ServiceRecord:
    return state(drawn(minutes, **changes))


def confirmed(minutes: int = 120, **changes: Any) -> ServiceRecord:
    record = waiting(minutes, **changes)
    return after(record, records.confirm(record, NOW))


def declined() -> ServiceRecord:
    record = waiting()
    return after(record, records.decline(record, "not_served", NOW))


def revoked() -> ServiceRecord:
    record = confirmed()
    return after(record, records.revoke(record, "not_served", NOW))


def asked(record: ServiceRecord, requested_minutes: int | None = 90, reason: str = "wrong_minutes") -> ServiceRecord:
    return after(record, records.request_correction(record, ANN, reason, NOW, requested_minutes=requested_minutes))


def total(events: Iterable[Event]) -> Decimal:
    return sum((records.counted_hours_change(e) for e in events), Decimal(0))


# --- Drawing up -----------------------------------------------------------------------------------


def test_a_record_from_attendance_waits_with_the_minutes_rounded_and_counts_nothing() -> None:
    (event,) = drawn(100)
    assert isinstance(event, ServiceRecorded)
    assert (event.minutes, event.hours, event.source, event.shift_id) == (100, Decimal("1.5"), "attendance", "SH00000001")
    assert [(b.below_minutes, b.hours) for b in event.rounding] == list(DEFAULT_ROUNDING.bands)
    record = state([event])
    assert (record.status, record.minutes, record.hours, record.counted_hours) == (RECORDED, 100, Decimal("1.5"), 0)
    assert records.counted_hours_change(event) == 0


def test_the_service_date_is_the_start_in_the_city_zone() -> None:
    late = datetime(2026, 2, 12, 16, 30, tzinfo=UTC)  # 00:30 on the 13th in Beijing
    (event,) = drawn(60, started_at=late, ended_at=late + timedelta(hours=1))
    assert event.service_date == date(2026, 2, 13)
    (event,) = drawn(60, started_at=late - timedelta(hours=1), ended_at=late)
    assert event.service_date == date(2026, 2, 12)


def test_an_administrators_entry_is_marked_and_names_no_shift() -> None:
    (event,) = drawn(90, source=RecordSource.admin_entry, shift_id=None)
    assert (event.source, event.shift_id) == (RecordSource.admin_entry, None)
    with pytest.raises(ValueError):
        drawn(90, source=RecordSource.admin_entry)
    with pytest.raises(ValueError):
        drawn(90, shift_id=None)


def test_a_flag_is_kept_for_the_organiser() -> None:
    (event,) = drawn(120, flag="no_check_out")
    assert state([event]).flag == "no_check_out"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"minutes": 121}, "minutes"),  # more than from start to end
        ({"minutes": -1}, "minutes"),
        ({"minutes": 1.5}, "minutes"),
        ({"ended_at": START - timedelta(minutes=1), "minutes": 0}, "ended_at"),
        ({"started_at": START.replace(tzinfo=None)}, "started_at"),
        ({"flag": "No Check-Out"}, "flag"),
    ],
)
def test_drawing_up_refuses_what_cannot_be_true(changes: dict[str, Any], field: str) -> None:
    minutes = changes.pop("minutes", 120)
    with pytest.raises(Invalid) as refused:
        drawn(minutes, **changes)
    assert refused.value.field == field


def test_an_entry_defaults_to_the_minutes_from_start_to_end() -> None:
    assert records.entry_minutes(START, END, NOW) == 120
    assert records.entry_minutes(START, END, NOW, 100) == 100


@pytest.mark.parametrize(
    ("start", "end", "minutes", "field"),
    [
        (START, START, None, "ended_at"),
        (START, NOW + timedelta(minutes=1), None, "ended_at"),  # not ended yet
        (START - timedelta(hours=25), START, None, "ended_at"),  # more than a day
        (START, END, 121, "minutes"),
        (START, END, -5, "minutes"),
        (START.replace(tzinfo=None), END, None, "started_at"),
    ],
)
def test_an_entry_is_made_afterwards_for_one_service_of_at_most_a_day(start, end, minutes, field) -> None:
    with pytest.raises(Invalid) as refused:
        records.entry_minutes(start, end, NOW, minutes)
    assert refused.value.field == field


# --- Rounding by district rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "rule", "hours"),
    [
        (0, DEFAULT_ROUNDING, "0"),
        (14, DEFAULT_ROUNDING, "0"),
        (15, DEFAULT_ROUNDING, "0.5"),
        (44, DEFAULT_ROUNDING, "0.5"),
        (45, DEFAULT_ROUNDING, "1"),
        (59, DEFAULT_ROUNDING, "1"),
        (60, DEFAULT_ROUNDING, "1"),
        (74, DEFAULT_ROUNDING, "1"),
        (75, DEFAULT_ROUNDING, "1.5"),
        (120, DEFAULT_ROUNDING, "2"),
        (0, HALVES, "0"),
        (1, HALVES, "0.5"),
        (30, HALVES, "0.5"),
        (31, HALVES, "1"),
        (61, HALVES, "1.5"),
        (119, HALVES, "2"),
    ],
)
def test_minutes_round_to_hours_by_the_rule_the_record_was_drawn_up_by(minutes: int, rule: RoundingRule, hours: str) -> None:
    (event,) = drawn(minutes, rule=rule)
    assert event.hours == Decimal(hours)


def rule_set(bands: RoundingRule, effective_from: datetime) -> RoundingRuleSet:
    return RoundingRuleSet(district_code=DISTRICT, bands=records.bands_of(bands), effective_from=effective_from)


def test_the_rule_in_force_at_the_start_applies_and_the_default_before_any() -> None:
    first, second = START - timedelta(days=30), START + timedelta(hours=1)
    schedule = records.fold_schedule(DISTRICT, [rule_set(HALVES, first), rule_set(DEFAULT_ROUNDING, second)])
    assert schedule.rule_at(first - timedelta(seconds=1)) == DEFAULT_ROUNDING
    assert schedule.rule_at(first) == HALVES  # effective_from is inclusive
    assert schedule.rule_at(START) == HALVES
    assert schedule.rule_at(second) == DEFAULT_ROUNDING
    assert schedule.in_force_at(first - timedelta(seconds=1)) is None
    assert schedule.in_force_at(START) == (first, HALVES)


def test_of_two_rules_from_the_same_time_the_later_set_wins_whatever_the_order_of_times() -> None:
    early, late = START - timedelta(days=2), START - timedelta(days=1)
    schedule = records.fold_schedule(
        DISTRICT, [rule_set(HALVES, late), rule_set(DEFAULT_ROUNDING, early), rule_set(DEFAULT_ROUNDING, late)]
    )
    assert schedule.rule_at(START) == DEFAULT_ROUNDING
    schedule = records.fold_schedule(DISTRICT, [rule_set(DEFAULT_ROUNDING, late), rule_set(HALVES, early)])
    assert schedule.rule_at(START) == DEFAULT_ROUNDING  # the later effective time, though set first
    assert schedule.rule_at(early) == HALVES


def test_setting_a_rule_records_it_from_its_effective_time() -> None:
    schedule = RoundingSchedule(DISTRICT)
    from_tomorrow = NOW + timedelta(days=1)
    (event,) = records.set_rounding_rule(schedule, HALVES.bands, from_tomorrow, NOW)
    assert isinstance(event, RoundingRuleSet)
    assert (event.district_code, event.effective_from) == (DISTRICT, from_tomorrow)
    assert records.rule_of(event.bands) == HALVES
    assert type(event).spec.subject(DISTRICT) == "dispatch.370303.rounding_rule.set"


def test_setting_the_rule_that_already_applies_changes_nothing() -> None:
    schedule = records.fold_schedule(DISTRICT, [rule_set(HALVES, NOW)])
    assert records.set_rounding_rule(schedule, HALVES.bands, NOW, NOW) == []
    assert records.set_rounding_rule(schedule, HALVES.bands, NOW + timedelta(days=3), NOW) == []
    # Beacon's default already applies where none was set.
    assert records.set_rounding_rule(RoundingSchedule(DISTRICT), DEFAULT_ROUNDING.bands, NOW, NOW) == []


def test_a_rule_applies_until_the_next_one_takes_effect() -> None:
    later = NOW + timedelta(days=10)
    schedule = records.fold_schedule(DISTRICT, [rule_set(HALVES, NOW), rule_set(DEFAULT_ROUNDING, later)])
    # HALVES applies a day on already (until `later`): setting it from then changes nothing.
    assert records.set_rounding_rule(schedule, HALVES.bands, NOW + timedelta(days=1), NOW) == []
    # From `later` the default applies: setting HALVES from then on is a change, and it wins the tie.
    (event,) = records.set_rounding_rule(schedule, HALVES.bands, later, NOW)
    assert records.evolve_schedule(schedule, event).rule_at(later + timedelta(days=100)) == HALVES


@pytest.mark.parametrize(
    ("district", "bands", "effective_from", "field"),
    [
        (DISTRICT, HALVES.bands, NOW - timedelta(seconds=1), "effective_from"),  # in the past
        (DISTRICT, HALVES.bands, NOW.replace(tzinfo=None), "effective_from"),
        ("370303001001", HALVES.bands, NOW, "district_code"),  # a community, not a district
        (DISTRICT, ((15, Decimal(0)), (45, Decimal("0.5"))), NOW, "bands"),  # does not reach 60
        (DISTRICT, ((30, Decimal(1)), (60, Decimal("0.5"))), NOW, "bands"),  # decreasing
        (DISTRICT, ((30, Decimal("0.333")), (60, Decimal(1))), NOW, "bands"),  # three decimals
        (DISTRICT, (), NOW, "bands"),
    ],
)
def test_a_rule_that_breaks_a_rule_is_refused_naming_the_field(district, bands, effective_from, field) -> None:
    with pytest.raises(Invalid) as refused:
        records.set_rounding_rule(RoundingSchedule(district), bands, effective_from, NOW)
    assert refused.value.field == field


def test_changes_of_minutes_round_by_the_records_own_rule() -> None:
    record = confirmed(61, rule=HALVES)
    assert record.hours == Decimal("1.5")
    (adjusted,) = records.adjust(record, 31, "checked_on_site", NOW)
    assert isinstance(adjusted, ServiceHoursAdjusted) and adjusted.hours == Decimal(1)  # HALVES, not the default


# --- Confirming -----------------------------------------------------------------------------------


def test_confirming_makes_the_recorded_hours_count() -> None:
    record = waiting(100)
    (event,) = records.confirm(record, NOW)
    assert isinstance(event, ServiceHoursConfirmed)
    assert (event.minutes, event.hours, event.adjusted_from_minutes, event.reason, event.at) == (100, Decimal("1.5"), None, None, NOW)
    assert (event.record_id, event.volunteer_number, event.site_id, event.source) == (RECORD_ID, ANN, "ST-DENGHUI", "attendance")
    record = after(record, [event])
    assert (record.status, record.counted_hours, record.version) == (CONFIRMED, Decimal("1.5"), 2)


def test_confirming_with_other_minutes_keeps_the_recorded_ones_and_needs_a_reason() -> None:
    record = waiting(120, flag="no_check_out")
    with pytest.raises(Invalid) as refused:
        records.confirm(record, NOW, minutes=75)
    assert refused.value.field == "reason"
    (event,) = records.confirm(record, NOW, minutes=75, reason="left_early")
    assert (event.minutes, event.hours, event.adjusted_from_minutes, event.reason) == (75, Decimal("1.5"), 120, "left_early")
    record = after(record, [event])
    assert (record.recorded_minutes, record.minutes) == (120, 75)


def test_a_reason_without_a_change_of_minutes_is_not_recorded() -> None:
    (event,) = records.confirm(waiting(120), NOW, minutes=120, reason="looked_fine")
    assert (event.adjusted_from_minutes, event.reason) == (None, None)


def test_confirming_again_changes_nothing() -> None:
    record = confirmed(120)
    assert records.confirm(record, NOW) == []
    assert records.confirm(record, NOW, minutes=120) == []
    adjusted = after(record, records.adjust(record, 90, "left_early", NOW))
    assert records.confirm(adjusted, NOW) == [] and records.confirm(adjusted, NOW, minutes=90) == []


def test_confirming_confirmed_hours_with_other_minutes_is_a_conflict_adjust_instead() -> None:
    with pytest.raises(Conflict) as refused:
        records.confirm(confirmed(120), NOW, minutes=60, reason="left_early")
    assert refused.value.details["state"] == CONFIRMED and "adjust" in refused.value.message


@pytest.mark.parametrize("make", [declined, revoked], ids=["declined", "revoked"])
def test_a_declined_or_revoked_record_cannot_be_confirmed(make) -> None:
    record = make()
    with pytest.raises(Conflict) as refused:
        records.confirm(record, NOW)
    assert refused.value.details["state"] == record.status


def test_confirming_refuses_minutes_a_record_cannot_hold() -> None:
    for minutes in (-1, 24 * 60 + 1, True):
        with pytest.raises(Invalid) as refused:
            records.confirm(waiting(), NOW, minutes=minutes, reason="typo")
        assert refused.value.field == "minutes"
    # Up to a day where the span is shorter (a late check-in): allowed.
    assert records.confirm(waiting(), NOW, minutes=24 * 60, reason="checked_in_late")


def test_a_bad_reason_code_is_refused_naming_it() -> None:
    with pytest.raises(Invalid) as refused:
        records.confirm(waiting(), NOW, minutes=60, reason="Left early!")
    assert refused.value.field == "reason"


# --- Declining, adjusting, revoking ---------------------------------------------------------------


def test_declining_a_waiting_record_keeps_it_declined_and_counting_nothing() -> None:
    record = waiting()
    (event,) = records.decline(record, "not_served", NOW)
    assert isinstance(event, ServiceRecordDeclined) and (event.record_id, event.volunteer_number) == (RECORD_ID, ANN)
    record = after(record, [event])
    assert (record.status, record.counted_hours) == (DECLINED, 0)
    assert records.decline(record, "not_served", NOW) == []
    assert records.decline(record, "another_reason", NOW) == []


@pytest.mark.parametrize(("make", "state_"), [(confirmed, CONFIRMED), (revoked, REVOKED)])
def test_a_record_that_counted_cannot_be_declined(make, state_) -> None:
    with pytest.raises(Conflict) as refused:
        records.decline(make(), "not_served", NOW)
    assert refused.value.details["state"] == state_


def test_an_adjustment_reverses_the_previous_hours_and_restates_them() -> None:
    record = confirmed(120)
    (first,) = records.adjust(record, 75, "left_early", NOW)
    assert isinstance(first, ServiceHoursAdjusted)
    assert (first.previous_minutes, first.previous_hours, first.minutes, first.hours) == (120, Decimal(2), 75, Decimal("1.5"))
    record = after(record, [first])
    (second,) = records.adjust(record, 150, "came_back", NOW)
    assert (second.previous_minutes, second.previous_hours, second.hours) == (75, Decimal("1.5"), Decimal("2.5"))
    record = after(record, [second])
    assert (record.status, record.minutes, record.counted_hours, record.recorded_minutes) == (CONFIRMED, 150, Decimal("2.5"), 120)


def test_adjusting_to_the_same_minutes_changes_nothing() -> None:
    assert records.adjust(confirmed(120), 120, "checked", NOW) == []


@pytest.mark.parametrize(("make", "state_"), [(waiting, RECORDED), (declined, DECLINED), (revoked, REVOKED)])
def test_only_confirmed_hours_are_adjusted(make, state_) -> None:
    with pytest.raises(Conflict) as refused:
        records.adjust(make(), 60, "left_early", NOW)
    assert refused.value.details["state"] == state_


def test_revoking_withdraws_the_hours_in_effect_and_the_record_stays() -> None:
    record = after(confirmed(120), records.adjust(confirmed(120), 90, "left_early", NOW))
    (event,) = records.revoke(record, "not_served", NOW)
    assert isinstance(event, ServiceHoursRevoked) and (event.minutes, event.hours) == (90, Decimal("1.5"))
    record = after(record, [event])
    assert (record.status, record.counted_hours, record.minutes) == (REVOKED, 0, 90)
    assert records.revoke(record, "not_served", NOW) == []


@pytest.mark.parametrize(("make", "state_"), [(waiting, RECORDED), (declined, DECLINED)])
def test_only_confirmed_hours_are_revoked(make, state_) -> None:
    with pytest.raises(Conflict) as refused:
        records.revoke(make(), "not_served", NOW)
    assert refused.value.details["state"] == state_


# --- Correction requests --------------------------------------------------------------------------


def test_the_volunteer_asks_for_a_correction_and_it_waits() -> None:
    record = waiting()
    (event,) = records.request_correction(record, ANN, "wrong_minutes", NOW, requested_minutes=150)
    assert isinstance(event, CorrectionRequested)
    assert (event.record_id, event.volunteer_number, event.requested_minutes, event.reason) == (RECORD_ID, ANN, 150, "wrong_minutes")
    record = after(record, [event])
    assert record.open_request is not None and record.open_request.number == 1


def test_only_the_volunteer_themself_may_ask() -> None:
    with pytest.raises(Invalid) as refused:
        records.request_correction(waiting(), BOB, "wrong_minutes", NOW)
    assert refused.value.field == "actor"


def test_asking_again_the_same_changes_nothing_and_another_request_waits_its_turn() -> None:
    record = asked(waiting(), 90)
    assert records.request_correction(record, ANN, "wrong_minutes", NOW, requested_minutes=90) == []
    with pytest.raises(Conflict) as refused:
        records.request_correction(record, ANN, "wrong_minutes", NOW, requested_minutes=60)
    assert refused.value.details["state"] == CORRECTION_REQUESTED


@pytest.mark.parametrize(("make", "state_"), [(declined, DECLINED), (revoked, REVOKED)])
def test_a_declined_or_revoked_record_takes_no_request(make, state_) -> None:
    with pytest.raises(Conflict) as refused:
        records.request_correction(make(), ANN, "wrong_minutes", NOW)
    assert refused.value.details["state"] == state_


def test_a_request_may_name_no_minutes_but_not_impossible_ones() -> None:
    assert records.request_correction(waiting(), ANN, "wrong_activity", NOW)
    with pytest.raises(Invalid) as refused:
        records.request_correction(waiting(), ANN, "wrong_minutes", NOW, requested_minutes=-3)
    assert refused.value.field == "minutes"


@pytest.mark.parametrize(
    ("make", "command"),
    [
        (waiting, lambda r: records.confirm(r, NOW)),
        (waiting, lambda r: records.decline(r, "not_served", NOW)),
        (confirmed, lambda r: records.adjust(r, 60, "left_early", NOW)),
        (confirmed, lambda r: records.revoke(r, "not_served", NOW)),
    ],
    ids=["confirm", "decline", "adjust", "revoke"],
)
def test_while_a_request_waits_the_organiser_answers_it_first(make, command) -> None:
    record = asked(make())
    with pytest.raises(Conflict) as refused:
        command(record)
    assert refused.value.details["state"] == CORRECTION_REQUESTED
    assert refused.value.details["record_status"] == record.status


def test_a_repeat_that_changes_nothing_is_no_clash_with_a_waiting_request() -> None:
    record = asked(confirmed(120))
    assert records.confirm(record, NOW) == []
    assert records.adjust(record, 120, "checked", NOW) == []


def test_a_refused_request_changes_no_hours() -> None:
    record = asked(confirmed(120), 180)
    (event,) = records.decide_correction(record, "refused", "records_agree", NOW)
    assert isinstance(event, CorrectionDecided) and event.outcome == CorrectionOutcome.refused
    record = after(record, [event])
    assert (record.minutes, record.counted_hours, record.open_request) == (120, Decimal(2), None)
    assert record.requests[0].outcome == CorrectionOutcome.refused


def test_a_granted_request_on_a_waiting_record_confirms_it_with_the_minutes_asked_for() -> None:
    record = asked(waiting(120, flag="no_check_out"), 90)
    decided, confirmation = records.decide_correction(record, "granted", "volunteer_right", NOW)
    assert isinstance(decided, CorrectionDecided) and decided.outcome == CorrectionOutcome.granted
    assert isinstance(confirmation, ServiceHoursConfirmed)
    assert (confirmation.minutes, confirmation.adjusted_from_minutes, confirmation.reason) == (90, 120, "volunteer_right")
    record = after(record, [decided, confirmation])
    assert (record.status, record.counted_hours, record.open_request) == (CONFIRMED, Decimal("1.5"), None)


def test_a_granted_request_on_confirmed_hours_adjusts_them_to_the_minutes_given() -> None:
    record = asked(confirmed(120), 180)
    decided, adjustment = records.decide_correction(record, "granted", "partly_right", NOW, minutes=150)
    assert isinstance(adjustment, ServiceHoursAdjusted)
    assert (adjustment.previous_hours, adjustment.minutes, adjustment.hours) == (Decimal(2), 150, Decimal("2.5"))


def test_a_granted_request_whose_minutes_are_right_already_changes_no_hours() -> None:
    record = asked(confirmed(120), None, "wrong_activity")
    with pytest.raises(Invalid) as refused:
        records.decide_correction(record, "granted", "ok", NOW)
    assert refused.value.field == "minutes"
    (decided,) = records.decide_correction(record, "granted", "ok", NOW, minutes=120)
    assert isinstance(decided, CorrectionDecided)


def test_deciding_again_changes_nothing_and_with_no_request_waiting_is_a_conflict() -> None:
    record = asked(confirmed(120), 90)
    decided = records.decide_correction(record, "granted", "volunteer_right", NOW)
    record = after(record, decided)
    assert records.decide_correction(record, "granted", "volunteer_right", NOW) == []
    assert records.decide_correction(record, "granted", "volunteer_right", NOW, minutes=90) == []
    for outcome, minutes in (("refused", None), ("granted", 60)):
        with pytest.raises(Conflict) as refused:
            records.decide_correction(record, outcome, "changed_mind", NOW, minutes=minutes)
        assert refused.value.details["state"] == NO_OPEN_REQUEST
    with pytest.raises(Conflict) as refused:
        records.decide_correction(waiting(), "refused", "nothing_asked", NOW)
    assert refused.value.details["state"] == NO_OPEN_REQUEST


def test_a_decision_refuses_nonsense_naming_the_field() -> None:
    record = asked(waiting())
    with pytest.raises(Invalid) as refused:
        records.decide_correction(record, "maybe", "unsure", NOW)
    assert refused.value.field == "outcome"
    with pytest.raises(Invalid) as refused:
        records.decide_correction(record, "refused", "records_agree", NOW, minutes=60)
    assert refused.value.field == "minutes"


def test_after_an_answer_the_volunteer_may_ask_again_and_every_request_is_kept() -> None:
    record = asked(confirmed(120), 90)
    record = after(record, records.decide_correction(record, "refused", "records_agree", NOW))
    record = asked(record, 100, "new_evidence")
    assert [(r.number, r.requested_minutes, r.outcome) for r in record.requests] == [
        (1, 90, CorrectionOutcome.refused),
        (2, 100, None),
    ]


# --- Counted hours: what points will credit -------------------------------------------------------


def play(record: ServiceRecord, *commands) -> tuple[ServiceRecord, list[Event]]:
    events: list[Event] = []
    for command in commands:
        decided = command(record)
        events.extend(decided)
        record = after(record, decided)
    return record, events


SCENARIOS = {
    "confirmed": [lambda r: records.confirm(r, NOW)],
    "confirmed_with_other_minutes": [lambda r: records.confirm(r, NOW, minutes=50, reason="left_early")],
    "declined": [lambda r: records.decline(r, "not_served", NOW)],
    "adjusted_down_and_up": [
        lambda r: records.confirm(r, NOW),
        lambda r: records.adjust(r, 44, "left_early", NOW),
        lambda r: records.adjust(r, 200, "came_back", NOW),
    ],
    "adjusted_then_revoked": [
        lambda r: records.confirm(r, NOW),
        lambda r: records.adjust(r, 75, "left_early", NOW),
        lambda r: records.revoke(r, "not_served", NOW),
    ],
    "granted_on_a_waiting_record": [
        lambda r: records.request_correction(r, ANN, "wrong_minutes", NOW, requested_minutes=130),
        lambda r: records.decide_correction(r, "granted", "volunteer_right", NOW),
    ],
    "granted_then_adjusted_then_refused": [
        lambda r: records.confirm(r, NOW),
        lambda r: records.request_correction(r, ANN, "wrong_minutes", NOW, requested_minutes=100),
        lambda r: records.decide_correction(r, "granted", "volunteer_right", NOW, minutes=95),
        lambda r: records.adjust(r, 119, "checked_again", NOW),
        lambda r: records.request_correction(r, ANN, "wrong_minutes", NOW, requested_minutes=300),
        lambda r: records.decide_correction(r, "refused", "records_agree", NOW),
    ],
    "repeated_commands": [
        lambda r: records.confirm(r, NOW),
        lambda r: records.confirm(r, NOW),
        lambda r: records.adjust(r, 60, "left_early", NOW),
        lambda r: records.adjust(r, 60, "left_early", NOW),
        lambda r: records.revoke(r, "not_served", NOW),
        lambda r: records.revoke(r, "not_served", NOW),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_changes_of_counted_hours_add_up_to_what_the_record_counts(name: str) -> None:
    first = drawn(120)
    record, events = play(state(first), *SCENARIOS[name])
    assert total([*first, *events]) == record.counted_hours
    assert record.version == 1 + len(events)  # nothing is ever removed: every change is one more event


def test_the_arithmetic_per_event() -> None:
    record = confirmed(120)
    (adjustment,) = records.adjust(record, 30, "left_early", NOW)
    assert records.counted_hours_change(adjustment) == Decimal("-1.5")
    (revocation,) = records.revoke(after(record, [adjustment]), "not_served", NOW)
    assert records.counted_hours_change(revocation) == Decimal("-0.5")


# --- The contracts --------------------------------------------------------------------------------


def test_record_events_round_trip_through_the_catalog_on_the_districts_subject() -> None:
    record = asked(confirmed(100), 90)
    events = [
        *drawn(100),
        *records.confirm(waiting(100), NOW),
        *records.request_correction(confirmed(100), ANN, "wrong_minutes", NOW, requested_minutes=90),
        *records.decide_correction(record, "granted", "volunteer_right", NOW),
    ]
    for version, event in enumerate(events, start=1):
        envelope = catalog.envelope(
            event, aggregate_id=RECORD_ID, aggregate_version=version, org_path=(DISTRICT, "370303001000"), actor="staff-7"
        )
        assert catalog.payload_of(envelope) == event
        assert catalog.subject_of(envelope) == f"dispatch.370303.service_record.{type(event).spec.action}"


def test_no_record_event_has_room_for_free_text() -> None:
    for model in (ServiceRecorded, ServiceHoursConfirmed, ServiceRecordDeclined, ServiceHoursAdjusted,
                  ServiceHoursRevoked, CorrectionRequested, CorrectionDecided, RoundingRuleSet):
        assert not {"content", "explanation", "comment", "description", "name"} & set(model.model_fields)
        assert model.model_config["extra"] == "forbid"
