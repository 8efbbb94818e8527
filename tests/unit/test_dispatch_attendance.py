"""Attendance's pure rules: rotating signed codes, the geofence, check-in and check-out by scanning,
closing a shift, and rounding service time to hours by district rule."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.dispatch import attendance
from services.dispatch.attendance import (
    DEFAULT_ROUNDING,
    Attendance,
    RoundingRule,
    Shift,
    ShiftCodes,
    close_shift,
    hours_for,
    scan,
    within,
)
from shared.catalog import Event, catalog
from shared.errors import Conflict, Invalid
from shared.events.dispatch import AttendanceFlagged, Geofence, ShiftOpened, VolunteerCheckedIn, VolunteerCheckedOut

START = datetime(2026, 2, 12, 12, 0, tzinfo=UTC)  # the lantern festival's 20:00 in Beijing
END = START + timedelta(hours=2)
SHIFT_ID, OTHER_SHIFT = "SH-LANTERN-01", "SH-LANTERN-02"
ANN, BOB, CAT = "V00000001", "V00000002", "V00000003"
SECRET = b"0123456789abcdef0123456789abcdef"
# A square in Zibo's Zhangdian district; a point ~100 m north, and one ~1.1 km north.
CENTRE = (36.8131, 118.0548)
NEAR = (36.8140, 118.0548)
FAR = (36.8231, 118.0548)


def opened(geofence: Geofence | None = None) -> ShiftOpened:
    return ShiftOpened(
        shift_id=SHIFT_ID,
        activity_id="A-LANTERN",
        site_id="S-ZHANGDIAN",
        starts_at=START,
        ends_at=END,
        capacity=40,
        geofence=geofence,
    )


def shift(geofence: Geofence | None = None) -> Shift:
    return Shift.of(opened(geofence))


def fenced() -> Shift:
    return shift(Geofence(lat=CENTRE[0], lon=CENTRE[1], radius_m=200))


def checked_in(at: datetime, who: str = ANN) -> VolunteerCheckedIn:
    return VolunteerCheckedIn(shift_id=SHIFT_ID, volunteer_number=who, at=at)


def state(*events: Event, who: str = ANN) -> Attendance | None:
    return attendance.fold(events, who)


def then(current: Attendance | None, events: Iterable[Event]) -> Attendance | None:
    for event in events:
        current = attendance.evolve(current, event)
    return current


# --- Rotating codes -------------------------------------------------------------------------------


def refusal_of(codes: ShiftCodes, code: str, shift_id: str, now: datetime) -> str:
    with pytest.raises(Invalid) as refused:
        codes.verify(code, shift_id, now)
    assert refused.value.field == "code"
    return str(refused.value.details["reason"])


def test_a_fresh_code_for_the_scanned_shift_is_accepted() -> None:
    codes = ShiftCodes(SECRET)
    codes.verify(codes.code_for(SHIFT_ID, START), SHIFT_ID, START + timedelta(seconds=5))


def test_a_code_is_compact_and_safe_in_a_url() -> None:
    code = ShiftCodes(SECRET).code_for(SHIFT_ID, START)
    shift_part, step, mac = code.split(".")
    assert shift_part == SHIFT_ID and int(step) == int(START.timestamp()) // 30
    assert len(mac) == 22 and len(code) <= 80
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in code)


def test_the_code_rotates_every_period() -> None:
    codes = ShiftCodes(SECRET, period_seconds=30)
    step_start = datetime.fromtimestamp((int(START.timestamp()) // 30) * 30, UTC)
    assert codes.code_for(SHIFT_ID, step_start) == codes.code_for(SHIFT_ID, step_start + timedelta(seconds=29))
    assert codes.code_for(SHIFT_ID, step_start) != codes.code_for(SHIFT_ID, step_start + timedelta(seconds=30))


def test_a_code_one_period_old_is_still_accepted() -> None:
    codes = ShiftCodes(SECRET)
    codes.verify(codes.code_for(SHIFT_ID, START), SHIFT_ID, START + timedelta(seconds=30))


def test_a_code_two_periods_old_is_stale() -> None:
    codes = ShiftCodes(SECRET)
    assert refusal_of(codes, codes.code_for(SHIFT_ID, START), SHIFT_ID, START + timedelta(seconds=60)) == "stale"


def test_a_code_from_the_future_is_refused() -> None:
    codes = ShiftCodes(SECRET)
    codes.verify(codes.code_for(SHIFT_ID, START + timedelta(seconds=30)), SHIFT_ID, START)
    assert refusal_of(codes, codes.code_for(SHIFT_ID, START + timedelta(seconds=60)), SHIFT_ID, START) == "future"


def test_the_tolerance_is_configurable() -> None:
    strict = ShiftCodes(SECRET, tolerance_steps=0)
    assert refusal_of(strict, strict.code_for(SHIFT_ID, START), SHIFT_ID, START + timedelta(seconds=30)) == "stale"
    lenient = ShiftCodes(SECRET, tolerance_steps=4)
    lenient.verify(lenient.code_for(SHIFT_ID, START), SHIFT_ID, START + timedelta(minutes=2))


def test_a_code_from_another_shift_is_refused_with_the_reason() -> None:
    codes = ShiftCodes(SECRET)
    with pytest.raises(Invalid, match=OTHER_SHIFT) as refused:
        codes.verify(codes.code_for(OTHER_SHIFT, START), SHIFT_ID, START)
    assert refused.value.details["reason"] == "other_shift"


def test_a_forged_code_is_refused() -> None:
    codes = ShiftCodes(SECRET)
    shift_part, step, mac = codes.code_for(SHIFT_ID, START).split(".")
    tampered_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    for forged in (
        f"{shift_part}.{step}.{tampered_mac}",
        f"{shift_part}.{int(step) + 1000}.{mac}",  # an old code moved forward in time
        f"{OTHER_SHIFT}.{step}.{mac}",  # another shift's name on this shift's code
        ShiftCodes(b"another secret of sixteen bytes+").code_for(SHIFT_ID, START),
    ):
        assert refusal_of(codes, forged, SHIFT_ID, START) == "forged", forged


@pytest.mark.parametrize(
    "code",
    [
        "",
        "hello",
        "SH-1.123",
        "SH-1.12a.AAAAAAAAAAAAAAAAAAAAAA",
        "SH 1.1.AAAAAAAAAAAAAAAAAAAAAA",
        "SH-1.1.AAAA",
        "SH-1.1.AAAAAAAAAAAAAAAAAAAAAA\n",
        "SH-1.-1.AAAAAAAAAAAAAAAAAAAAAA",
        "SH-1.١٢٣.AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_a_malformed_code_is_refused(code: str) -> None:
    assert refusal_of(ShiftCodes(SECRET), code, "SH-1", START) == "malformed"


def test_time_comes_from_the_server_clock_passed_in() -> None:
    # The same code, judged at two server times: only `now` decides, nothing in the code does.
    codes = ShiftCodes(SECRET)
    code = codes.code_for(SHIFT_ID, START)
    codes.verify(code, SHIFT_ID, START)
    assert refusal_of(codes, code, SHIFT_ID, START + timedelta(hours=1)) == "stale"


def test_a_code_needs_a_strong_secret_and_a_sane_period() -> None:
    for bad in (
        lambda: ShiftCodes(b"short"),
        lambda: ShiftCodes(SECRET, period_seconds=0),
        lambda: ShiftCodes(SECRET, tolerance_steps=-1),
    ):
        with pytest.raises(ValueError):
            bad()


def test_a_time_without_a_zone_is_a_programming_error() -> None:
    with pytest.raises(Invalid, match="time zone"):
        ShiftCodes(SECRET).code_for(SHIFT_ID, datetime(2026, 2, 12, 12, 0))


# --- Geofence -------------------------------------------------------------------------------------


def test_within_measures_the_great_circle_distance() -> None:
    fence = Geofence(lat=CENTRE[0], lon=CENTRE[1], radius_m=200)
    assert within(fence, *CENTRE) and within(fence, *NEAR)
    assert not within(fence, *FAR)
    assert 95 < attendance.distance_m(*CENTRE, *NEAR) < 105
    assert 1100 < attendance.distance_m(*CENTRE, *FAR) < 1120


def test_a_fenced_shift_refuses_a_scan_without_a_position() -> None:
    with pytest.raises(Invalid) as refused:
        scan(None, fenced(), ANN, START)
    assert refused.value.field == "position" and refused.value.details["reason"] == "missing"


def test_a_fenced_shift_refuses_a_scan_from_outside() -> None:
    with pytest.raises(Invalid) as refused:
        scan(None, fenced(), ANN, START, position=FAR)
    assert refused.value.field == "position" and refused.value.details["reason"] == "outside"


def test_a_fenced_shift_refuses_a_position_that_is_not_one() -> None:
    with pytest.raises(Invalid) as refused:
        scan(None, fenced(), ANN, START, position=(95.0, 10.0))
    assert refused.value.field == "position" and refused.value.details["reason"] == "malformed"


def test_a_fenced_shift_accepts_a_scan_from_inside() -> None:
    assert scan(None, fenced(), ANN, START, position=NEAR) == [checked_in(START)]


def test_a_shift_without_a_fence_needs_no_position() -> None:
    assert scan(None, shift(), ANN, START) == [checked_in(START)]


# --- Shifts ---------------------------------------------------------------------------------------


def test_a_shift_ends_after_it_starts() -> None:
    with pytest.raises(ValidationError, match="ends after it starts"):
        ShiftOpened(shift_id=SHIFT_ID, activity_id="A-1", site_id="S-1", starts_at=START, ends_at=START, capacity=1)


def test_a_shift_times_must_carry_a_zone() -> None:
    with pytest.raises(ValidationError, match="starts_at"):
        ShiftOpened(
            shift_id=SHIFT_ID,
            activity_id="A-1",
            site_id="S-1",
            starts_at=datetime(2026, 2, 12, 12),
            ends_at=END,
            capacity=1,
        )


def test_a_shift_id_cannot_break_the_code_format() -> None:
    with pytest.raises(ValidationError, match="shift_id"):
        ShiftOpened(shift_id="SH.1", activity_id="A-1", site_id="S-1", starts_at=START, ends_at=END, capacity=1)


def test_the_attendance_events_are_in_the_dispatch_context() -> None:
    for model, subject in (
        (ShiftOpened, "shift.opened"),
        (VolunteerCheckedIn, "attendance.checked_in"),
        (VolunteerCheckedOut, "attendance.checked_out"),
        (AttendanceFlagged, "attendance.flagged"),
    ):
        assert model.spec.subject("370303") == f"dispatch.370303.{subject}"
        assert catalog.lookup(model.__name__, 1).model is model


def test_a_shift_opened_round_trips_with_its_geofence() -> None:
    event = opened(Geofence(lat=CENTRE[0], lon=CENTRE[1], radius_m=150))
    assert ShiftOpened.model_validate_json(event.model_dump_json()) == event


# --- Scanning -------------------------------------------------------------------------------------


def test_the_first_scan_checks_in_at_the_server_time() -> None:
    events = scan(None, shift(), ANN, START + timedelta(minutes=3))
    assert events == [checked_in(START + timedelta(minutes=3))]
    current = then(None, events)
    assert current is not None and current.present and current.checked_in_at == START + timedelta(minutes=3)


def test_check_in_opens_thirty_minutes_before_the_start() -> None:
    assert scan(None, shift(), ANN, START - timedelta(minutes=30)) == [checked_in(START - timedelta(minutes=30))]
    with pytest.raises(Conflict) as refused:
        scan(None, shift(), ANN, START - timedelta(minutes=31))
    assert refused.value.details["state"] == "not_open"
    assert refused.value.details["opens_at"] == START - timedelta(minutes=30)


def test_a_check_in_after_the_shift_ended_is_refused() -> None:
    for late in (END, END + timedelta(hours=1)):
        with pytest.raises(Conflict) as refused:
            scan(None, shift(), ANN, late)
        assert refused.value.details["state"] == "ended"


def test_the_second_scan_checks_out_with_the_minutes_served() -> None:
    current = state(checked_in(START + timedelta(minutes=5)))
    events = scan(current, shift(), ANN, START + timedelta(minutes=95, seconds=59))
    assert events == [
        VolunteerCheckedOut(
            shift_id=SHIFT_ID, volunteer_number=ANN, at=START + timedelta(minutes=95, seconds=59), minutes=90
        )
    ]
    current = then(current, events)
    assert current is not None and not current.present and current.minutes == 90 and current.flag is None


def test_a_second_scan_within_a_minute_changes_nothing() -> None:
    current = state(checked_in(START))
    assert scan(current, shift(), ANN, START + timedelta(seconds=59)) == []
    assert scan(current, shift(), ANN, START + timedelta(seconds=60)) != []


def test_a_scan_after_the_check_out_changes_nothing() -> None:
    current = state(
        checked_in(START),
        VolunteerCheckedOut(shift_id=SHIFT_ID, volunteer_number=ANN, at=START + timedelta(hours=1), minutes=60),
    )
    assert scan(current, shift(), ANN, START + timedelta(hours=1, minutes=10)) == []
    assert scan(current, shift(), ANN, END + timedelta(hours=1)) == []


def test_an_early_check_in_counts_from_the_shift_start() -> None:
    current = state(checked_in(START - timedelta(minutes=25)))
    [out] = scan(current, shift(), ANN, START + timedelta(minutes=40))
    assert isinstance(out, VolunteerCheckedOut) and out.minutes == 40


def test_duration_is_capped_by_the_shift() -> None:
    current = state(checked_in(START + timedelta(minutes=30)))
    [out] = scan(current, shift(), ANN, END + timedelta(hours=3))
    assert isinstance(out, VolunteerCheckedOut)
    assert out.at == END + timedelta(hours=3) and out.minutes == 90


def test_checking_in_and_out_before_the_start_serves_no_minutes() -> None:
    current = state(checked_in(START - timedelta(minutes=20)))
    [out] = scan(current, shift(), ANN, START - timedelta(minutes=5))
    assert isinstance(out, VolunteerCheckedOut) and out.minutes == 0


def test_a_fenced_shift_checks_the_position_on_check_out_too() -> None:
    current = state(checked_in(START))
    with pytest.raises(Invalid):
        scan(current, fenced(), ANN, START + timedelta(hours=1), position=FAR)
    assert scan(current, fenced(), ANN, START + timedelta(hours=1), position=CENTRE) != []


def test_another_volunteers_attendance_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        scan(state(checked_in(START)), shift(), BOB, START + timedelta(hours=1))


def test_folding_keeps_each_volunteer_apart() -> None:
    history = [
        opened(),
        checked_in(START, ANN),
        checked_in(START + timedelta(minutes=2), BOB),
        VolunteerCheckedOut(shift_id=SHIFT_ID, volunteer_number=ANN, at=START + timedelta(hours=1), minutes=60),
    ]
    ann, bob = attendance.fold(history, ANN), attendance.fold(history, BOB)
    assert ann is not None and not ann.present and ann.minutes == 60
    assert bob is not None and bob.present and bob.checked_in_at == START + timedelta(minutes=2)
    assert attendance.fold(history, CAT) is None
    assert attendance.fold_all(history) == {ANN: ann, BOB: bob}


# --- Closing a shift ------------------------------------------------------------------------------


def test_a_missing_check_out_is_closed_at_the_shift_end_and_flagged() -> None:
    history = [
        opened(),
        checked_in(START + timedelta(minutes=10), BOB),
        checked_in(START - timedelta(minutes=10), ANN),
        checked_in(START, CAT),
        VolunteerCheckedOut(shift_id=SHIFT_ID, volunteer_number=CAT, at=START + timedelta(hours=1), minutes=60),
    ]
    events = close_shift(attendance.fold_all(history).values(), shift(), END + timedelta(minutes=5))
    assert events == [
        VolunteerCheckedOut(shift_id=SHIFT_ID, volunteer_number=ANN, at=END, minutes=120),
        AttendanceFlagged(shift_id=SHIFT_ID, volunteer_number=ANN, reason="no_check_out", closed_at=END),
        VolunteerCheckedOut(shift_id=SHIFT_ID, volunteer_number=BOB, at=END, minutes=110),
        AttendanceFlagged(shift_id=SHIFT_ID, volunteer_number=BOB, reason="no_check_out", closed_at=END),
    ]
    states = attendance.fold_all([*history, *events])
    assert states[ANN].flag == "no_check_out" and states[BOB].flag == "no_check_out" and states[CAT].flag is None
    assert not any(s.present for s in states.values())


def test_closing_a_shift_twice_changes_nothing() -> None:
    history = [checked_in(START)]
    history += close_shift(attendance.fold_all(history).values(), shift(), END)
    assert close_shift(attendance.fold_all(history).values(), shift(), END + timedelta(hours=1)) == []


def test_a_shift_is_not_closed_before_it_ends() -> None:
    with pytest.raises(Conflict) as refused:
        close_shift([], shift(), END - timedelta(seconds=1))
    assert refused.value.details["state"] == "not_ended"


def test_a_scan_after_the_shift_was_closed_changes_nothing() -> None:
    history = [checked_in(START)]
    history += close_shift(attendance.fold_all(history).values(), shift(), END)
    assert scan(attendance.fold(history, ANN), shift(), ANN, END + timedelta(minutes=3)) == []


# --- Hours rounding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "hours"),
    [
        (0, "0"),
        (14, "0"),
        (15, "0.5"),
        (44, "0.5"),
        (45, "1"),
        (59, "1"),
        (60, "1"),
        (70, "1"),
        (74, "1"),
        (80, "1.5"),
        (105, "2"),
        (170, "3"),
        (600, "10"),
        (614, "10"),
        (615, "10.5"),
    ],
)
def test_hours_under_the_default_rule(minutes: int, hours: str) -> None:
    assert hours_for(minutes) == Decimal(hours)
    assert hours_for(minutes, DEFAULT_ROUNDING) == Decimal(hours)


def test_a_district_may_round_by_its_own_rule() -> None:
    quarters = RoundingRule(((8, 0), (23, "0.25"), (38, "0.5"), (53, "0.75"), (60, 1)))
    assert [hours_for(m, quarters) for m in (7, 8, 30, 52, 53, 67, 95)] == [
        Decimal(h) for h in ("0", "0.25", "0.5", "0.75", "1", "1", "1.5")
    ]
    assert attendance.rule_for("370303", {"370303": quarters}) is quarters
    assert attendance.rule_for("370305", {"370303": quarters}) is DEFAULT_ROUNDING


def test_a_rule_may_count_every_started_hour() -> None:
    generous = RoundingRule(((1, 0), (60, 1)))
    assert hours_for(61, generous) == Decimal(2) and hours_for(120, generous) == Decimal(2)


@pytest.mark.parametrize(
    "bands",
    [
        pytest.param((), id="no-bands"),
        pytest.param(((45, "0.5"), (15, "0"), (60, "1")), id="bounds-not-increasing"),
        pytest.param(((15, "0"), (15, "0.5"), (60, "1")), id="bounds-repeated"),
        pytest.param(((0, "0"), (60, "1")), id="bound-zero"),
        pytest.param(((15, "0"), (45, "0.5")), id="not-covering-the-hour"),
        pytest.param(((15, "0"), (75, "1")), id="beyond-the-hour"),
        pytest.param(((15, "0"), (60, "1.5")), id="more-than-an-hour"),
        pytest.param(((15, "-0.5"), (60, "1")), id="negative-hours"),
        pytest.param(((15, "0.5"), (60, "0")), id="hours-decreasing"),
        pytest.param(((15, "half"), (60, "1")), id="hours-not-a-number"),
        pytest.param(((15.5, "0"), (60, "1")), id="bound-not-whole-minutes"),
        pytest.param(((15, "NaN"), (60, "1")), id="hours-nan"),
        pytest.param(((15,), (60, "1")), id="band-not-a-pair"),
    ],
)
def test_an_invalid_rounding_rule_is_refused(bands) -> None:
    with pytest.raises(Invalid) as refused:
        RoundingRule(bands)
    assert refused.value.field == "bands"


@pytest.mark.parametrize("minutes", [-1, 1.5, True, "30"])
def test_hours_need_whole_non_negative_minutes(minutes) -> None:
    with pytest.raises(Invalid) as refused:
        hours_for(minutes)
    assert refused.value.field == "minutes"


def test_scanned_minutes_round_to_hours() -> None:
    current = state(checked_in(START))
    [out] = scan(current, shift(), ANN, START + timedelta(hours=1, minutes=50))
    assert isinstance(out, VolunteerCheckedOut) and hours_for(out.minutes) == Decimal(2)
