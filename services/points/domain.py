"""Points' rules, pure. (The ledger, shop, time bank and star levels come with issue 5.)"""

from __future__ import annotations

from shared.envelope import EventEnvelope
from shared.events.points import PointsAccountOpened


def open_account(volunteer_number: str, history: list[EventEnvelope]) -> list[PointsAccountOpened]:
    """An account opens once per volunteer; a second registration event opens nothing."""
    if any(e.type == PointsAccountOpened.spec.name for e in history):
        return []
    return [PointsAccountOpened(volunteer_number=volunteer_number)]
