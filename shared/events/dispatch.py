"""Dispatch's public events: shifts and attendance (check-in and check-out by QR code at the site),
and orders (点单 · 派单 · 接单: placed, dispatched or opened for taking, accepted or declined, done).

None carries personal data: a volunteer appears only by volunteer number, a place only by site id
and, for a geofence, the site's own coordinates. Every time is the server's, in a known zone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.catalog import Event, catalog
from shared.events.common import AgeBand, DivisionCode, SiteId, Skill, TeamId, VolunteerNumber

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


# --- Orders (点单 · 派单 · 接单) ---------------------------------------------------------------------

OrderId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
ServiceField = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


class OrderKind(StrEnum):
    order = "order"
    micro_wish = "micro_wish"  # 微心愿


class GroupServed(StrEnum):
    """The five groups served (五为)."""

    elderly = "elderly"
    children = "children"
    people_in_difficulty = "people_in_difficulty"
    psychological_support = "psychological_support"
    public_needs = "public_needs"


class Urgency(StrEnum):
    normal = "normal"
    urgent = "urgent"


class PlacedVia(StrEnum):
    resident = "resident"
    community_staff = "community_staff"
    community = "community"


_AGE_ORDER = list(AgeBand)


@catalog.register(context="dispatch", aggregate="order", action="placed")
class OrderPlaced(Event):
    """A need was ordered (点单) by a resident, by community staff for a resident, or by the
    community itself; a micro-wish (微心愿) is one kind of order. The site that owns the community
    will dispatch it. The event carries no personal data: the requester, the address and the
    description stay in Beacon's dispatch store and are never published."""

    order_id: OrderId
    kind: OrderKind
    group_served: GroupServed = Field(description="Which of the five groups served (五为) it is for.")
    field: ServiceField = Field(description="Field of service, e.g. smart_help_for_elderly, legal_aid.")
    community_code: DivisionCode
    site_id: SiteId = Field(description="The practice site that owns the community and dispatches the order.")
    window_start: AwareDatetime
    window_end: AwareDatetime
    headcount: int = Field(ge=1, le=1000, description="How many volunteers the order needs.")
    required_skills: list[Skill] = Field(default_factory=list, max_length=20)
    required_certifications: list[Skill] = Field(default_factory=list, max_length=20)
    min_age_band: AgeBand | None = Field(default=None, description="None: no lower age limit.")
    max_age_band: AgeBand | None = Field(default=None, description="None: no upper age limit.")
    urgency: Urgency = Urgency.normal
    risky: bool = Field(default=False, description="Risky work: only volunteers with an insurance record.")
    placed_via: PlacedVia
    placed_at: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> OrderPlaced:
        if self.window_end <= self.window_start:
            raise ValueError("an order's time window ends after it starts")
        if (
            self.min_age_band
            and self.max_age_band
            and _AGE_ORDER.index(self.min_age_band) > _AGE_ORDER.index(self.max_age_band)
        ):
            raise ValueError("the minimum age band is above the maximum")
        return self


@catalog.register(context="dispatch", aggregate="order", action="dispatched")
class OrderDispatched(Event):
    """A site dispatched the order (派单) to one team or to named volunteers, who must accept or
    decline before the deadline; `attempt` counts the dispatches of this order, 1 for the first."""

    order_id: OrderId
    team_id: TeamId | None = Field(default=None, description="Set when dispatched to a team.")
    volunteer_numbers: list[VolunteerNumber] = Field(default_factory=list, max_length=1000)
    site_id: SiteId = Field(description="The site that dispatched it.")
    deadline: AwareDatetime = Field(description="Accept or decline by then, or the order times out.")
    attempt: int = Field(ge=1)
    at: AwareDatetime

    @model_validator(mode="after")
    def _one_addressee(self) -> OrderDispatched:
        if (self.team_id is None) == (not self.volunteer_numbers):
            raise ValueError("an order is dispatched to a team or to volunteers, not both or neither")
        return self


@catalog.register(context="dispatch", aggregate="order", action="opened_for_taking")
class OrderOpenedForTaking(Event):
    """The owning site opened the order for teams to take (抢单): the first team to take it serves it."""

    order_id: OrderId
    site_id: SiteId
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="declined")
class OrderDeclined(Event):
    """A team or volunteer the order was dispatched to declined it, with a reason code; once
    everyone it went to has declined, the order waits to be dispatched again or escalated."""

    order_id: OrderId
    declined_by: VolunteerNumber | TeamId = Field(description="A volunteer number or a team id.")
    reason: Reason = Field(description="Why, e.g. unavailable, too_far, lacks_skill.")
    attempt: int = Field(ge=1)
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="timed_out")
class OrderTimedOut(Event):
    """Nobody accepted the dispatched order before its deadline; it waits to be dispatched again
    or escalated to the site one level up."""

    order_id: OrderId
    attempt: int = Field(ge=1)
    deadline: AwareDatetime
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="accepted")
class OrderAccepted(Event):
    """A volunteer or team the order was dispatched to accepted it (接单) and will serve it."""

    order_id: OrderId
    accepted_by: VolunteerNumber | TeamId = Field(description="A volunteer number or a team id.")
    attempt: int = Field(ge=1)
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="taken")
class OrderTaken(Event):
    """A team took an order that was open for taking (抢单) and will serve it."""

    order_id: OrderId
    team_id: TeamId
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="escalated")
class OrderEscalated(Event):
    """The order went up one level of the practice tree (station to institute, institute to
    centre): the site `to_site_id` now owns it and dispatches it."""

    order_id: OrderId
    from_site_id: SiteId
    to_site_id: SiteId
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="cancelled")
class OrderCancelled(Event):
    """The order was cancelled with a reason code before it was completed; it stays cancelled."""

    order_id: OrderId
    reason: Reason = Field(description="Why, e.g. withdrawn_by_resident, duplicate, need_met_elsewhere.")
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="completed")
class OrderCompleted(Event):
    """The order was served; `people_served` counts the people who received the service (服务人次)."""

    order_id: OrderId
    people_served: int = Field(ge=0, le=100_000)
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="rated")
class OrderRated(Event):
    """The resident rated the completed service from 1 (poor) to 5 (excellent). Any comment the
    resident wrote is free text that may identify people, so it stays in dispatch's store and
    is never part of this event."""

    order_id: OrderId
    rating: int = Field(ge=1, le=5)
    at: AwareDatetime
