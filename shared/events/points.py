"""Points' public events: accounts, ledger movements, rewards."""

from __future__ import annotations

from shared.catalog import Event, catalog
from shared.events.common import VolunteerNumber


@catalog.register(context="points", aggregate="account", action="opened")
class PointsAccountOpened(Event):
    """A volunteer's points account opened (balance zero); it follows their registration."""

    volunteer_number: VolunteerNumber
