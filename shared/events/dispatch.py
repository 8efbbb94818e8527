"""Dispatch's public events: shifts and attendance (check-in and check-out by QR code at the site).

None carries personal data: a volunteer appears only by volunteer number, a place only by site id
and, for a geofence, the site's own coordinates. Every time is the server's, in a known zone.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.catalog import Event, catalog
from shared.events.common import SiteId, VolunteerNumber

# Letters, digits, "_" and "-" only: a shift id travels inside the QR code as "<shift>.<step>.<mac>".
ShiftId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
ActivityId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


class Geofence(BaseModel):
    """A circle around the site: a scan is accepted only from a position inside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lat: float = Field(ge=-90, le=90, description="Centre latitude, WGS 84 degrees.")
    lon: float = Field(ge=-180, le=180, description="Centre longitude, WGS 84 degrees.")
    radius_m: float = Field(gt=0, le=50_000, description="Radius in metres.")


@catalog.register(context="dispatch", aggregate="shift", action="opened")
class ShiftOpened(Event):
    """A shift of an activity was scheduled at a practice site: volunteers check in and out of it
    by scanning the rotating QR code shown there, from shortly before it starts until it ends.
    Service time is counted only between its start and its end. With a geofence, a scan is
    accepted only from a position inside the circle."""

    shift_id: ShiftId
    activity_id: ActivityId
    site_id: SiteId
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: int = Field(ge=1, le=100_000, description="How many volunteers the shift needs.")
    geofence: Geofence | None = Field(default=None, description="None: a scan is accepted from anywhere.")

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> ShiftOpened:
        if self.ends_at <= self.starts_at:
            raise ValueError("a shift ends after it starts")
        return self


@catalog.register(context="dispatch", aggregate="shift", action="checked_in")
class VolunteerCheckedIn(Event):
    """A volunteer scanned the shift's QR code at the site and is now present; `at` is the
    server's time of the scan (an early check-in counts only from the shift's start)."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="shift", action="checked_out")
class VolunteerCheckedOut(Event):
    """A volunteer left the shift: they scanned its QR code a second time, or the shift ended
    without a check-out (then `at` is the shift's end and an AttendanceFlagged follows).
    `minutes` is the service time in whole minutes, counted only within the shift's hours."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    at: AwareDatetime
    minutes: int = Field(ge=0, description="Whole minutes served, capped by the shift's start and end.")


@catalog.register(context="dispatch", aggregate="shift", action="attendance_flagged")
class AttendanceFlagged(Event):
    """A volunteer's attendance needs review by station staff before its hours are trusted:
    `no_check_out` means they never checked out and Beacon closed the attendance at the
    shift's end (`closed_at`)."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    reason: Reason = Field(description="Why it is flagged, e.g. no_check_out.")
    closed_at: AwareDatetime = Field(description="The check-out time Beacon set: the shift's end.")
