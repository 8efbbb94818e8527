"""The city's clock for calendar days: service dates, activity dates, points' expiry."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

CITY_ZONE = ZoneInfo("Asia/Shanghai")


def city_date(at: datetime) -> date:
    """The day `at` (an aware time) falls on in the city."""
    return at.astimezone(CITY_ZONE).date()


def city_today() -> date:
    """Today in the city, whatever zone the machine keeps: the day a date someone enters (held on,
    granted on, opened on) is checked against. A machine on UTC is a day behind from 16:00 UTC."""
    return city_date(datetime.now(UTC))
