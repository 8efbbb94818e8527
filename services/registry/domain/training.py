"""Training sessions (岗前培训) and who attended them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date

from shared.catalog import Event
from shared.errors import Invalid
from shared.events.registry import TrainingAttended, TrainingSessionHeld


@dataclass(frozen=True)
class TrainingSession:
    session_id: str
    held_on: date
    attendees: frozenset[str]
    version: int


def fold(history: Iterable[Event]) -> TrainingSession | None:
    session: TrainingSession | None = None
    for event in history:
        if isinstance(event, TrainingSessionHeld):
            session = TrainingSession(event.session_id, event.held_on, frozenset(), 1)
        elif isinstance(event, TrainingAttended) and session is not None:
            session = replace(session, attendees=session.attendees | {event.volunteer_number}, version=session.version + 1)
        elif session is not None:
            session = replace(session, version=session.version + 1)
    return session


def hold(session_id: str, site_id: str, topic: str, held_on: date, hours: float, today: date) -> TrainingSessionHeld:
    if held_on > today:
        raise Invalid("a session is recorded once it has been held, not before", field="held_on")
    return TrainingSessionHeld(session_id=session_id, site_id=site_id, topic=topic, held_on=held_on, hours=hours)


def attend(session: TrainingSession, volunteers: Iterable[str]) -> list[Event]:
    """Record attendance; those already recorded are left as they are."""
    return [
        TrainingAttended(session_id=session.session_id, volunteer_number=number)
        for number in sorted(set(volunteers) - session.attendees)
    ]
