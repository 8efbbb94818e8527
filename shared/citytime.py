"""The city's clock for calendar days: service dates, activity dates, points' expiry."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

CITY_ZONE = ZoneInfo("Asia/Shanghai")


def city_date(at: datetime) -> date:
    """The day `at` (an aware time) falls on in the city."""
    return at.astimezone(CITY_ZONE).date()
