"""Attendance at a shift, pure: rotating signed QR codes, the geofence, check-in and check-out by
scanning, closing what the shift's end left open, and rounding minutes to hours by district rule.

Every time here is the caller's `now`, the server clock: nothing a phone sends is trusted for time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from services.dispatch.domain import aware
from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.dispatch import (
    AttendanceFlagged,
    Geofence,
    ShiftOpened,
    VolunteerCheckedIn,
    VolunteerCheckedOut,
)

CHECK_IN_OPENS = timedelta(minutes=30)  # before the shift starts
REPEAT_WINDOW = timedelta(seconds=60)  # a second scan this soon is the same scan again
NO_CHECK_OUT = "no_check_out"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAC_BYTES = 16  # 128 bits: unguessable, and the whole code stays short enough for a QR code and a URL
_CODE = re.compile(r"([A-Za-z0-9_-]{1,40})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})")
_EARTH_RADIUS_M = 6_371_008.8




# --- Rotating codes -------------------------------------------------------------------------------


class ShiftCodes:
    """Signs and checks the QR code a shift shows: `<shift id>.<step>.<mac>`, where the step is the
    number of whole periods since the Unix epoch and the MAC is HMAC-SHA256 over both, truncated
    and base64url-encoded. A code is accepted for `tolerance_steps` periods either side of now."""

    def __init__(self, secret: bytes, period_seconds: int = 30, tolerance_steps: int = 1) -> None:
        if len(secret) < 16:
            raise ValueError("the code secret needs at least 16 bytes")
        if period_seconds < 1:
            raise ValueError("the code period is at least one second")
        if tolerance_steps < 0:
            raise ValueError("the tolerance is zero or more periods")
        self._secret = secret
        self.period = timedelta(seconds=period_seconds)
        self.tolerance_steps = tolerance_steps

    def step_at(self, at: datetime) -> int:
        return (aware(at, "at") - _EPOCH) // self.period

    def _mac(self, shift_id: str, step: int) -> str:
        # Domain-separated so that the secret's MACs can never be mistaken for another use's.
        message = f"beacon.shift-code\x00{shift_id}\x00{step}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def valid_until(self, at: datetime) -> datetime:
        """When a code shown at `at` stops being accepted."""
        return _EPOCH + self.period * (self.step_at(at) + 1 + self.tolerance_steps)

    def code_for(self, shift_id: str, at: datetime) -> str:
        step = self.step_at(at)
        return f"{shift_id}.{step}.{self._mac(shift_id, step)}"

    def verify(self, code: str, shift_id: str, now: datetime) -> None:
        """Refuse (Invalid, field "code", details["reason"]) a malformed, forged, other-shift,
        stale or future code; return quietly for a good one."""
        match = _CODE.fullmatch(code) if isinstance(code, str) else None
        if match is None:
            raise Invalid("this is not a Beacon shift code", field="code", reason="malformed")
        code_shift, step_text, mac = match.groups()
        step = int(step_text)
        if not hmac.compare_digest(mac, self._mac(code_shift, step)):
            raise Invalid("this code was not issued by Beacon", field="code", reason="forged")
        if code_shift != shift_id:
            raise Invalid(f"this code belongs to another shift ({code_shift})", field="code", reason="other_shift")
        now_step = self.step_at(now)
        if step < now_step - self.tolerance_steps:
            raise Invalid("this code has expired: scan the code shown now", field="code", reason="stale")
        if step > now_step + self.tolerance_steps:
            raise Invalid("this code is not valid yet", field="code", reason="future")


# --- Geofence -------------------------------------------------------------------------------------


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def within(geofence: Geofence, lat: float, lon: float) -> bool:
    return distance_m(geofence.lat, geofence.lon, lat, lon) <= geofence.radius_m


def check_position(geofence: Geofence | None, position: tuple[float, float] | None) -> None:
    if geofence is None:
        return
    if position is None:
        raise Invalid("this shift accepts a scan only with the phone's position", field="position", reason="missing")
    lat, lon = position
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Invalid("the position is not a latitude and longitude", field="position", reason="malformed")
    if not within(geofence, lat, lon):
        raise Invalid("the scan was made outside the site's area", field="position", reason="outside")


# --- Shifts and attendance ------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    shift_id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    geofence: Geofence | None = None

    @classmethod
    def of(cls, opened: ShiftOpened) -> Shift:
        return cls(opened.shift_id, opened.starts_at, opened.ends_at, opened.capacity, opened.geofence)

    @property
    def check_in_opens_at(self) -> datetime:
        return self.starts_at - CHECK_IN_OPENS

    def served_minutes(self, checked_in_at: datetime, checked_out_at: datetime) -> int:
        """Whole minutes between check-in and check-out, counted only within the shift's hours."""
        start, end = max(checked_in_at, self.starts_at), min(checked_out_at, self.ends_at)
        return max(0, (end - start) // timedelta(minutes=1))


@dataclass(frozen=True)
class Attendance:
    """One volunteer at one shift."""

    shift_id: str
    volunteer_number: str
    checked_in_at: datetime
    checked_out_at: datetime | None = None
    minutes: int | None = None
    flag: str | None = None

    @property
    def present(self) -> bool:
        return self.checked_out_at is None


def evolve(attendance: Attendance | None, event: Event) -> Attendance | None:
    match event:
        case VolunteerCheckedIn():
            return Attendance(event.shift_id, event.volunteer_number, event.at)
        case VolunteerCheckedOut():
            assert attendance is not None, "a check-out before the check-in"
            return replace(attendance, checked_out_at=event.at, minutes=event.minutes)
        case AttendanceFlagged():
            assert attendance is not None, "a flag before the check-in"
            return replace(attendance, flag=event.reason)
    return attendance


def fold(history: Iterable[Event], volunteer_number: str) -> Attendance | None:
    """One volunteer's attendance, from their shift's events (the others' are skipped)."""
    attendance: Attendance | None = None
    for event in history:
        if getattr(event, "volunteer_number", None) == volunteer_number:
            attendance = evolve(attendance, event)
    return attendance


def fold_all(history: Iterable[Event]) -> dict[str, Attendance]:
    """Every volunteer's attendance at a shift, by volunteer number, from the shift's events."""
    states: dict[str, Attendance] = {}
    for event in history:
        number = getattr(event, "volunteer_number", None)
        if number is not None:
            state = evolve(states.get(number), event)
            if state is not None:
                states[number] = state
    return states


def scan(
    attendance: Attendance | None,
    shift: Shift,
    volunteer_number: str,
    now: datetime,
    position: tuple[float, float] | None = None,
) -> list[Event]:
    """A volunteer scanned the shift's (already verified) code: the first scan checks in, the next
    checks out; a repeated scan, or one after the check-out, changes nothing."""
    aware(now, "now")
    if attendance is not None and (attendance.shift_id, attendance.volunteer_number) != (
        shift.shift_id,
        volunteer_number,
    ):
        raise ValueError("the attendance is another volunteer's or another shift's")
    check_position(shift.geofence, position)
    if attendance is None:
        if now < shift.check_in_opens_at:
            raise Conflict(
                f"check-in opens at {shift.check_in_opens_at.isoformat()}",
                state="not_open",
                opens_at=shift.check_in_opens_at,
            )
        if now >= shift.ends_at:
            raise Conflict("the shift has ended", state="ended")
        return [VolunteerCheckedIn(shift_id=shift.shift_id, volunteer_number=volunteer_number, at=now)]
    if not attendance.present or now - attendance.checked_in_at < REPEAT_WINDOW:
        return []
    minutes = shift.served_minutes(attendance.checked_in_at, now)
    return [VolunteerCheckedOut(shift_id=shift.shift_id, volunteer_number=volunteer_number, at=now, minutes=minutes)]


def close_shift(attendances: Iterable[Attendance], shift: Shift, now: datetime) -> list[Event]:
    """Once the shift has ended, check out at its end everyone still present and flag it for review."""
    aware(now, "now")
    if now < shift.ends_at:
        raise Conflict("the shift has not ended yet", state="not_ended")
    events: list[Event] = []
    for attendance in sorted(attendances, key=lambda a: a.volunteer_number):
        if attendance.shift_id != shift.shift_id:
            raise ValueError(f"attendance at shift {attendance.shift_id} passed to close shift {shift.shift_id}")
        if not attendance.present:
            continue
        number, end = attendance.volunteer_number, shift.ends_at
        minutes = shift.served_minutes(attendance.checked_in_at, end)
        events.append(VolunteerCheckedOut(shift_id=shift.shift_id, volunteer_number=number, at=end, minutes=minutes))
        events.append(
            AttendanceFlagged(shift_id=shift.shift_id, volunteer_number=number, reason=NO_CHECK_OUT, closed_at=end)
        )
    return events


# --- Hours rounding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundingRule:
    """A district's rounding of service time: each whole hour counts 1 h; the minutes left over
    fall into the first band whose upper bound (exclusive) exceeds them and count its hours.
    The bands' bounds increase up to 60, and their hours lie in [0, 1] without decreasing."""

    bands: tuple[tuple[int, Decimal], ...]

    def __post_init__(self) -> None:
        bands: list[tuple[int, Decimal]] = []
        for band in self.bands:
            try:
                bound, hours = band
                hours = Decimal(str(hours))
            except (TypeError, ValueError, InvalidOperation):
                raise Invalid(f"a band is (upper bound in minutes, hours), not {band!r}", field="bands") from None
            if not isinstance(bound, int) or isinstance(bound, bool) or not hours.is_finite():
                raise Invalid(f"a band is (upper bound in minutes, hours), not {band!r}", field="bands")
            bands.append((bound, hours))
        if not bands:
            raise Invalid("a rounding rule has at least one band", field="bands")
        bounds = [b for b, _ in bands]
        if any(b <= a for a, b in pairwise([0, *bounds])):
            raise Invalid("the bands' upper bounds must increase from above 0", field="bands")
        if bounds[-1] != 60:
            raise Invalid("the last band must end at 60 minutes, so that every remainder is covered", field="bands")
        hours = [h for _, h in bands]
        if any(h < 0 or h > 1 for h in hours):
            raise Invalid("a band counts between 0 and 1 hour", field="bands")
        if any(b < a for a, b in pairwise(hours)):
            raise Invalid("a longer remainder may not count fewer hours", field="bands")
        object.__setattr__(self, "bands", tuple(bands))

    def hours_for_remainder(self, minutes: int) -> Decimal:
        return next(hours for bound, hours in self.bands if minutes < bound)


DEFAULT_ROUNDING = RoundingRule(((15, Decimal(0)), (45, Decimal("0.5")), (60, Decimal(1))))


def rule_for(district_code: str, rules: Mapping[str, RoundingRule]) -> RoundingRule:
    """The district's rule, or Beacon's default where the district has set none."""
    return rules.get(district_code, DEFAULT_ROUNDING)


def hours_for(minutes: int, rule: RoundingRule = DEFAULT_ROUNDING) -> Decimal:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        raise Invalid(f"service time is a whole number of minutes, zero or more, not {minutes!r}", field="minutes")
    whole, rest = divmod(minutes, 60)
    return Decimal(whole) + rule.hours_for_remainder(rest)
