"""Training's pure rules: a session is recorded once held; attendance is recorded once per volunteer."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.registry.domain import training
from shared.errors import Invalid
from shared.events.registry import TrainingAttended, TrainingSessionHeld

TODAY = date(2026, 11, 23)


def held(on: date = TODAY) -> TrainingSessionHeld:
    return training.hold("S00000001", "S-HEPING", "first_aid", on, 2.5, TODAY)


def test_a_session_held_today_or_earlier_is_recorded() -> None:
    assert held() == TrainingSessionHeld(session_id="S00000001", site_id="S-HEPING", topic="first_aid", held_on=TODAY, hours=2.5)
    assert held(TODAY - timedelta(days=30)).held_on == TODAY - timedelta(days=30)


def test_a_session_in_the_future_is_refused_naming_the_date() -> None:
    with pytest.raises(Invalid) as refused:
        held(TODAY + timedelta(days=1))
    assert refused.value.field == "held_on"


def test_a_new_session_has_no_attendees() -> None:
    session = training.fold([held()])
    assert session is not None
    assert session.attendees == frozenset() and session.version == 1 and session.held_on == TODAY


def test_attendance_is_recorded_once_per_volunteer_in_number_order() -> None:
    session = training.fold([held()])
    assert session is not None
    events = training.attend(session, ["V00000003", "V00000001", "V00000003"])
    assert events == [
        TrainingAttended(session_id="S00000001", volunteer_number="V00000001"),
        TrainingAttended(session_id="S00000001", volunteer_number="V00000003"),
    ]


def test_recording_the_same_attendance_again_records_nothing_new() -> None:
    first = training.fold([held()])
    assert first is not None
    events = training.attend(first, ["V00000001", "V00000002"])
    session = training.fold([held(), *events])
    assert session is not None
    assert session.attendees == {"V00000001", "V00000002"} and session.version == 3
    assert training.attend(session, ["V00000002", "V00000001"]) == []
    assert training.attend(session, ["V00000002", "V00000004"]) == [
        TrainingAttended(session_id="S00000001", volunteer_number="V00000004")
    ]


def test_nothing_folds_to_no_session() -> None:
    assert training.fold([]) is None
