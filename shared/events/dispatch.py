"""Dispatch's public events: activities, their shifts and sign-ups; attendance (check-in and
check-out by QR code at the site); service records (志愿服务记录) and their hours; and orders
(点单 · 派单 · 接单: placed, dispatched or opened for taking, accepted or declined, done).

None carries personal data: a volunteer appears only by volunteer number, a place only by site id
and, for a geofence, the site's own coordinates. Every time is the server's, in a known zone.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.catalog import Event, catalog
from shared.events.common import AgeBand, DivisionCode, ReservationId, SiteId, Skill, TeamId, VolunteerNumber

# Letters, digits, "_" and "-" only: a shift id travels inside the QR code as "<shift>.<step>.<mac>".
ShiftId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
ActivityId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
ServiceField = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


class Geofence(BaseModel):
    """A circle around the site: a scan is accepted only from a position inside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lat: float = Field(ge=-90, le=90, description="Centre latitude, WGS 84 degrees.")
    lon: float = Field(ge=-180, le=180, description="Centre longitude, WGS 84 degrees.")
    radius_m: float = Field(gt=0, le=50_000, description="Radius in metres.")


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


# --- Activities, shifts and sign-ups -------------------------------------------------------------

PostId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
Theme = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


class ActivityKind(StrEnum):
    from_order = "from_order"  # serves an order (点单)
    regular = "regular"  # a station's own, e.g. weekly duty
    brand_project = "brand_project"  # 品牌项目
    festival = "festival"  # 我们的节日
    lecture = "lecture"  # 理论宣讲


class Post(BaseModel):
    """A post of an activity (定岗): a role at a place, e.g. a traffic post at a crossing. Its
    title stays in dispatch's store; the event names it by code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    post_id: PostId
    required_skills: list[Skill] = Field(default_factory=list, max_length=20)


class ShiftPosition(StrEnum):
    confirmed = "confirmed"
    waitlisted = "waitlisted"


@catalog.register(context="dispatch", aggregate="activity", action="scheduled")
class ActivityScheduled(Event):
    """An activity (场次) was scheduled by a practice site: on its own (a brand project, a festival,
    a lecture, regular duty) or to serve an order. Its posts are the roles volunteers fill; its
    shifts follow as ShiftOpened. The title and description stay in dispatch's store."""

    activity_id: ActivityId
    site_id: SiteId = Field(description="The practice site that organises it; the envelope's org path is the site's.")
    kind: ActivityKind
    theme: Theme = Field(description="Open-ended theme code, e.g. lantern_festival, elderly_lunch.")
    field: ServiceField = Field(description="Field of service, e.g. civilised_traffic.")
    group_served: GroupServed
    order_id: OrderId | None = Field(default=None, description="The order it serves, for kind from_order.")
    brand_team_id: TeamId | None = Field(default=None, description="The brand-project team that runs it, if any.")
    posts: list[Post] = Field(default_factory=list, max_length=100)
    starts_on: date
    ends_on: date

    @model_validator(mode="after")
    def _consistent(self) -> ActivityScheduled:
        if self.ends_on < self.starts_on:
            raise ValueError("an activity ends on or after the day it starts")
        if (self.kind == ActivityKind.from_order) != (self.order_id is not None):
            raise ValueError("an activity serves an order exactly when its kind is from_order")
        return self


@catalog.register(context="dispatch", aggregate="activity", action="completed")
class ActivityCompleted(Event):
    """The organiser closed the activity; `people_served` counts the people it served (服务人次)."""

    activity_id: ActivityId
    people_served: int = Field(ge=0, le=10_000_000)
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="activity", action="cancelled")
class ActivityCancelled(Event):
    """The activity was cancelled with a reason code; each of its shifts still to come is
    cancelled with it (ShiftCancelled, which names the volunteers notified)."""

    activity_id: ActivityId
    reason: Reason
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="shift", action="opened")
class ShiftOpened(Event):
    """A shift of an activity was scheduled at a practice site: volunteers sign up for it, then
    check in and out by scanning the rotating QR code shown there, from shortly before it starts
    until it ends. Service time is counted only between its start and its end. With a geofence,
    a scan is accepted only from a position inside the circle. Recurring shifts (every night
    20:00–22:00 for 30 days) are one ShiftOpened each, sharing a `series_id`."""

    shift_id: ShiftId
    activity_id: ActivityId
    site_id: SiteId
    post_id: PostId | None = Field(default=None, description="The activity's post it staffs, if any.")
    series_id: ShiftId | None = Field(default=None, description="Shared by the shifts of one recurrence.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: int = Field(ge=1, le=100_000, description="How many volunteers the shift needs.")
    geofence: Geofence | None = Field(default=None, description="None: a scan is accepted from anywhere.")

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> ShiftOpened:
        if self.ends_at <= self.starts_at:
            raise ValueError("a shift ends after it starts")
        return self


@catalog.register(context="dispatch", aggregate="shift", action="signed_up")
class VolunteerSignedUp(Event):
    """A volunteer signed up for a shift: `confirmed` while it has room, else `waitlisted` in
    order of sign-up, to be promoted when a confirmed volunteer withdraws."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    position: ShiftPosition
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="shift", action="sign_up_withdrawn")
class SignUpWithdrawn(Event):
    """A volunteer withdrew their sign-up (confirmed or waitlisted); `late` when it was less than
    24 hours before the shift's start."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    late: bool
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="shift", action="waitlist_promoted")
class WaitlistPromoted(Event):
    """The first volunteer on the waiting list got the place a withdrawal freed: now confirmed."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="shift", action="cancelled")
class ShiftCancelled(Event):
    """The shift will not take place. `notified` lists every volunteer signed up (confirmed or
    waitlisted), to whom Beacon sent the notice; notification partners subscribe to this."""

    shift_id: ShiftId
    activity_id: ActivityId
    reason: Reason
    notified: list[VolunteerNumber] = Field(default_factory=list, max_length=100_000)
    at: AwareDatetime


# --- Attendance (one aggregate per volunteer and shift) --------------------------------------------


@catalog.register(context="dispatch", aggregate="attendance", action="checked_in")
class VolunteerCheckedIn(Event):
    """A volunteer scanned the shift's QR code at the site and is now present; `at` is the
    server's time of the scan (an early check-in counts only from the shift's start)."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="attendance", action="checked_out")
class VolunteerCheckedOut(Event):
    """A volunteer left the shift: they scanned its QR code a second time, or the shift ended
    without a check-out (then `at` is the shift's end and an AttendanceFlagged follows).
    `minutes` is the service time in whole minutes, counted only within the shift's hours."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    at: AwareDatetime
    minutes: int = Field(ge=0, description="Whole minutes served, capped by the shift's start and end.")


@catalog.register(context="dispatch", aggregate="attendance", action="flagged")
class AttendanceFlagged(Event):
    """A volunteer's attendance needs review by station staff before its hours are trusted:
    `no_check_out` means they never checked out and Beacon closed the attendance at the
    shift's end (`closed_at`)."""

    shift_id: ShiftId
    volunteer_number: VolunteerNumber
    reason: Reason = Field(description="Why it is flagged, e.g. no_check_out.")
    closed_at: AwareDatetime = Field(description="The check-out time Beacon set: the shift's end.")


# --- Service records (志愿服务记录) ------------------------------------------------------------------
#
# The hours a record counts (for figures, points, stars) change only by these events, each of which
# says by how much: ServiceHoursConfirmed +hours, ServiceHoursAdjusted hours − previous_hours,
# ServiceHoursRevoked −hours; ServiceRecorded, ServiceRecordDeclined and the correction events
# change nothing. Summed over a record's events, that is what the record counts now.

RecordId = Annotated[str, StringConstraints(pattern=r"^R\d{8,12}$")]
Hours = Annotated[Decimal, Field(ge=0, le=24 * 366, max_digits=8, decimal_places=2)]


class RecordSource(StrEnum):
    attendance = "attendance"  # from a check-in and check-out
    admin_entry = "admin_entry"  # entered afterwards by an administrator: hours, but no points


class CorrectionOutcome(StrEnum):
    granted = "granted"
    refused = "refused"


class RoundingBand(BaseModel):
    """Minutes left over after whole hours, below `below_minutes`, count `hours`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    below_minutes: int = Field(ge=1, le=60)
    hours: Decimal = Field(ge=0, le=1, max_digits=3, decimal_places=2)


class _ServiceAttribution(Event):
    """What every hour-bearing record event repeats, so that a consumer needs no other event."""

    record_id: RecordId
    volunteer_number: VolunteerNumber
    activity_id: ActivityId
    shift_id: ShiftId | None = Field(default=None, description="None for hours entered by an administrator.")
    site_id: SiteId
    field: ServiceField
    group_served: GroupServed
    service_date: date = Field(description="The day the service started, in the city's time zone (Asia/Shanghai).")
    source: RecordSource = Field(
        description="attendance: from a check-in and check-out; admin_entry: entered afterwards by an administrator."
    )


@catalog.register(context="dispatch", aggregate="service_record", action="recorded")
class ServiceRecorded(_ServiceAttribution):
    """A service record (志愿服务记录, per the 2020 national measures) was drawn up and waits for the
    organiser: from a check-in and check-out, or entered afterwards by an administrator (`source`
    admin_entry). `hours` are the minutes rounded by `rounding`, the district's rule in force when
    the service started; every later change of this record's minutes rounds by that same rule.
    `flag` says why it needs a careful look (e.g. no_check_out). It counts nowhere until confirmed:
    it changes no counted hours. What was done (the record's content) stays in dispatch."""

    started_at: AwareDatetime
    ended_at: AwareDatetime
    minutes: int = Field(ge=0, description="Whole minutes served, at most the time from start to end.")
    hours: Hours
    rounding: list[RoundingBand] = Field(
        min_length=1,
        max_length=60,
        description="The district's rounding rule the hours were (and will be) rounded by; see RoundingRuleSet.",
    )
    flag: Reason | None = None


@catalog.register(context="dispatch", aggregate="service_record", action="hours_confirmed")
class ServiceHoursConfirmed(_ServiceAttribution):
    """The organiser (the envelope's actor) confirmed the record: its `hours` count from now
    (figures, points, stars): add them. When the organiser changed the minutes while confirming,
    `adjusted_from_minutes` holds the recorded ones and `reason` why; both are null otherwise.
    Hours from an administrator's entry (`source` admin_entry) earn no points."""

    minutes: int = Field(ge=0)
    hours: Hours
    adjusted_from_minutes: int | None = Field(default=None, ge=0)
    reason: Reason | None = None
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="service_record", action="declined")
class ServiceRecordDeclined(Event):
    """The organiser declined a record that was waiting: it never counted and never will (no
    change of counted hours). The record stays, with its history."""

    record_id: RecordId
    volunteer_number: VolunteerNumber
    reason: Reason
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="service_record", action="hours_adjusted")
class ServiceHoursAdjusted(_ServiceAttribution):
    """A correction of confirmed hours: it reverses `previous_hours` and restates `hours` in one
    event (apply hours − previous_hours). Nothing is deleted; every correction is kept."""

    previous_minutes: int = Field(ge=0)
    previous_hours: Hours
    minutes: int = Field(ge=0)
    hours: Hours
    reason: Reason
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="service_record", action="hours_revoked")
class ServiceHoursRevoked(_ServiceAttribution):
    """Confirmed hours were withdrawn (e.g. found not served): subtract `hours`, the hours the
    record counted until now. The record stays, revoked for good."""

    minutes: int = Field(ge=0)
    hours: Hours
    reason: Reason
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="service_record", action="correction_requested")
class CorrectionRequested(Event):
    """The volunteer asked for their record to be corrected, with a reason code; a record has at
    most one request waiting at a time. Their explanation, in their words, stays in dispatch."""

    record_id: RecordId
    volunteer_number: VolunteerNumber
    requested_minutes: int | None = Field(default=None, ge=0, description="The minutes they believe right.")
    reason: Reason
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="service_record", action="correction_decided")
class CorrectionDecided(Event):
    """The organiser answered the record's waiting correction request. A granted one is followed,
    in the same transaction, by the change itself: ServiceHoursConfirmed (the record was waiting)
    or ServiceHoursAdjusted (it was confirmed), unless the minutes were right already. This event
    changes no counted hours by itself."""

    record_id: RecordId
    volunteer_number: VolunteerNumber
    outcome: CorrectionOutcome
    reason: Reason
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="rounding_rule", action="set")
class RoundingRuleSet(Event):
    """A district set how service minutes round to hours, for service that starts at or after
    `effective_from` (never in the past: records already drawn up keep their hours). Each whole
    hour counts 1 h, and the minutes left over count the hours of the first band they fall below
    (e.g. below 15 → 0, below 45 → 0.5, below 60 → 1). Where a district has set none, Beacon
    rounds by exactly that example. A rule applies until the next one takes effect; of two rules
    from the same time, the later set wins."""

    district_code: DivisionCode
    bands: list[RoundingBand] = Field(min_length=1, max_length=60)
    effective_from: AwareDatetime


# --- Orders (点单 · 派单 · 接单) ---------------------------------------------------------------------



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
    time_credit_reservation: ReservationId | None = Field(
        default=None,
        description="Paid with time credits the orderer set aside in points' time bank (TimeCreditsReserved): "
        "spent when the order is completed, returned when it is cancelled.",
    )

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
    decline before the deadline; `attempt` counts the dispatches of this order, 1 for the first.
    When everyone a dispatch went to declined, or its deadline passed, Beacon re-dispatches the
    order by itself to the next suggested volunteers not yet tried (`automatic` is true)."""

    order_id: OrderId
    team_id: TeamId | None = Field(default=None, description="Set when dispatched to a team.")
    volunteer_numbers: list[VolunteerNumber] = Field(default_factory=list, max_length=1000)
    site_id: SiteId = Field(description="The site that dispatched it.")
    deadline: AwareDatetime = Field(description="Accept or decline by then, or the order times out.")
    attempt: int = Field(ge=1)
    at: AwareDatetime
    automatic: bool = Field(
        default=False,
        description="True when Beacon re-dispatched it after the previous attempt was declined or timed out; "
        "false when staff dispatched it.",
    )

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
    everyone it went to has declined, Beacon re-dispatches it to the next suggested volunteers or
    escalates it (the events that follow say which), or it waits for staff, listed as overdue."""

    order_id: OrderId
    declined_by: VolunteerNumber | TeamId = Field(description="A volunteer number or a team id.")
    reason: Reason = Field(description="Why, e.g. unavailable, too_far, lacks_skill.")
    attempt: int = Field(ge=1)
    at: AwareDatetime


@catalog.register(context="dispatch", aggregate="order", action="timed_out")
class OrderTimedOut(Event):
    """Nobody accepted the dispatched order before its deadline. Beacon then re-dispatches it to
    the next suggested volunteers or escalates it to the site one level up (the events that
    follow say which); at the top of the tree it waits for staff, listed as overdue."""

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
    centre): the site `to_site_id` now owns it and dispatches it. Beacon escalates by itself
    (`automatic` is true) when a dispatch went unanswered and no suggested volunteer is left to
    try, or when the team it went to declined or let it time out."""

    order_id: OrderId
    from_site_id: SiteId
    to_site_id: SiteId
    at: AwareDatetime
    automatic: bool = Field(default=False, description="True when Beacon escalated it; false when staff did.")


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
