"""Points reacts to registry's events."""

from __future__ import annotations

from services.points import handlers
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore
from shared.subscriber import Reactor


def reactor(store: EventStore) -> Reactor:
    points = Reactor("points", store)
    points.on(VolunteerRegistered)(handlers.open_account_for)
    return points
