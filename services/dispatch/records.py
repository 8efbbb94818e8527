"""Service records (志愿服务记录, as the 2020 national measures require), pure: drawing one up from a
check-in and check-out or from an administrator's entry; the organiser's confirmation (with other
minutes and a reason), decline, adjustment and revocation; the volunteer's correction requests and
their outcome; and each district's rounding rule over time.

Nothing is ever deleted: a change of confirmed hours is a new event that reverses the previous
hours and restates them. A record's state is folded from its events; each command returns the
events it decides, none when it is already in effect (a repeated command is harmless), or raises a
refusal: Invalid (the field at fault) or Conflict (the state it clashes with). Times are the
caller's `now`, the server clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from pydantic import ValidationError

from services.dispatch.activities import city_date
from services.dispatch.attendance import DEFAULT_ROUNDING, RoundingRule, hours_for
from services.dispatch.domain import aware
from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.dispatch import (
    CorrectionDecided,
    CorrectionOutcome,
    CorrectionRequested,
    GroupServed,
    RecordSource,
    RoundingBand,
    RoundingRuleSet,
    ServiceHoursAdjusted,
    ServiceHoursConfirmed,
    ServiceHoursRevoked,
    ServiceRecordDeclined,
    ServiceRecorded,
)

# Statuses: waiting for the organiser; counting; declined while waiting; withdrawn once counted.
RECORDED, CONFIRMED, DECLINED, REVOKED = "recorded", "confirmed", "declined", "revoked"
# The state a 409 names while the volunteer's correction request waits for an answer.
CORRECTION_REQUESTED = "correction_requested"
NO_OPEN_REQUEST = "no_open_request"

# An administrator enters one service of at most a day; a change of minutes may state up to the
# record's span, or a day where the span is shorter (the volunteer checked in late, say).
MAX_ENTRY = timedelta(hours=24)
DAY_MINUTES = 24 * 60

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_DISTRICT = re.compile(r"^\d{6}$")




def _code(value: str | None, name: str) -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise Invalid(f"{name} is a code of lower-case letters, digits and _, not {value!r}", field=name)
    return value


def _whole_minutes(value: object, name: str = "minutes") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(f"{name} is a whole number of minutes, zero or more, not {value!r}", field=name)
    return value


def span_minutes(started_at: datetime, ended_at: datetime) -> int:
    return max(0, (ended_at - started_at) // timedelta(minutes=1))


# --- Rounding rules, per district, over time ------------------------------------------------------


@dataclass(frozen=True)
class RoundingSchedule:
    """A district's rounding rules, each from its `effective_from` on, in the order they were set."""

    district_code: str
    changes: tuple[tuple[datetime, RoundingRule], ...] = ()
    version: int = 0

    def in_force_at(self, at: datetime) -> tuple[datetime, RoundingRule] | None:
        """The change in force at `at`: the latest with effective_from <= at (of two from the same
        time, the later set); None where the district has set none by then."""
        in_force: tuple[datetime, RoundingRule] | None = None
        for effective_from, rule in self.changes:
            if effective_from <= at and (in_force is None or effective_from >= in_force[0]):
                in_force = (effective_from, rule)
        return in_force

    def rule_at(self, at: datetime) -> RoundingRule:
        """The rule in force at `at`; Beacon's default where the district had set none."""
        in_force = self.in_force_at(at)
        return DEFAULT_ROUNDING if in_force is None else in_force[1]

    def in_effect(self, rule: RoundingRule, effective_from: datetime) -> bool:
        """Would setting `rule` from `effective_from` change nothing? A rule applies until the next
        one takes effect, so only whether it applies at that time already matters."""
        return self.rule_at(effective_from) == rule


def rule_of(bands: Iterable[RoundingBand]) -> RoundingRule:
    return RoundingRule(tuple((b.below_minutes, b.hours) for b in bands))


def bands_of(rule: RoundingRule) -> list[RoundingBand]:
    return [RoundingBand(below_minutes=bound, hours=hours) for bound, hours in rule.bands]


def evolve_schedule(schedule: RoundingSchedule, event: Event) -> RoundingSchedule:
    assert isinstance(event, RoundingRuleSet), f"{type(event).__name__} is no rounding rule event"
    change = (event.effective_from, rule_of(event.bands))
    return replace(schedule, changes=(*schedule.changes, change), version=schedule.version + 1)


def fold_schedule(district_code: str, history: Iterable[Event]) -> RoundingSchedule:
    schedule = RoundingSchedule(district_code)
    for event in history:
        schedule = evolve_schedule(schedule, event)
    return schedule


def set_rounding_rule(
    schedule: RoundingSchedule, bands: Sequence[tuple[int, Decimal | str]], effective_from: datetime, now: datetime
) -> list[Event]:
    """Round the district's service minutes by `bands` for service starting at `effective_from` or
    later. Never in the past: a record's hours are the rule in force at its start, for good."""
    if not _DISTRICT.match(schedule.district_code):
        raise Invalid("a rounding rule is set for a district: a 6-digit division code", field="district_code")
    aware(effective_from, "effective_from")
    aware(now, "now")
    if effective_from < now:
        raise Invalid("a rounding rule takes effect now or later, never in the past", field="effective_from")
    rule = RoundingRule(tuple(bands))  # Invalid (field "bands") for a rule that breaks one
    try:
        as_bands = bands_of(rule)
    except ValidationError as error:
        raise Invalid(f"a band's hours have at most two decimals: {error.errors()[0]['msg']}", field="bands") from None
    if schedule.in_effect(rule, effective_from):
        return []
    return [RoundingRuleSet(district_code=schedule.district_code, bands=as_bands, effective_from=effective_from)]


# --- Records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrectionRequest:
    number: int  # 1 for the record's first request
    requested_minutes: int | None
    reason: str
    requested_at: datetime
    outcome: CorrectionOutcome | None = None
    decided_reason: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class ServiceRecord:
    record_id: str
    volunteer_number: str
    activity_id: str
    shift_id: str | None
    site_id: str
    field: str
    group_served: GroupServed
    service_date: date
    source: RecordSource
    started_at: datetime
    ended_at: datetime
    recorded_minutes: int
    recorded_hours: Decimal
    rule: RoundingRule
    flag: str | None = None
    status: str = RECORDED
    minutes: int = 0  # in effect now: as recorded, or as confirmed or adjusted since
    hours: Decimal = Decimal(0)
    requests: tuple[CorrectionRequest, ...] = ()
    version: int = 1

    @property
    def counted_hours(self) -> Decimal:
        """What the record counts now (figures, points, stars): its hours while confirmed, else 0."""
        return self.hours if self.status == CONFIRMED else Decimal(0)

    @property
    def open_request(self) -> CorrectionRequest | None:
        last = self.requests[-1] if self.requests else None
        return last if last is not None and last.outcome is None else None

    @property
    def max_minutes(self) -> int:
        return max(span_minutes(self.started_at, self.ended_at), DAY_MINUTES)

    def attribution(self) -> dict[str, object]:
        return {
            "record_id": self.record_id,
            "volunteer_number": self.volunteer_number,
            "activity_id": self.activity_id,
            "shift_id": self.shift_id,
            "site_id": self.site_id,
            "field": self.field,
            "group_served": self.group_served,
            "service_date": self.service_date,
            "source": self.source,
        }


def evolve(record: ServiceRecord | None, event: Event) -> ServiceRecord:
    if isinstance(event, ServiceRecorded):
        return ServiceRecord(
            record_id=event.record_id,
            volunteer_number=event.volunteer_number,
            activity_id=event.activity_id,
            shift_id=event.shift_id,
            site_id=event.site_id,
            field=event.field,
            group_served=event.group_served,
            service_date=event.service_date,
            source=event.source,
            started_at=event.started_at,
            ended_at=event.ended_at,
            recorded_minutes=event.minutes,
            recorded_hours=event.hours,
            rule=rule_of(event.rounding),
            flag=event.flag,
            minutes=event.minutes,
            hours=event.hours,
        )
    assert record is not None, f"{type(event).__name__} before the record was drawn up"
    record = replace(record, version=record.version + 1)
    match event:
        case ServiceHoursConfirmed():
            return replace(record, status=CONFIRMED, minutes=event.minutes, hours=event.hours)
        case ServiceRecordDeclined():
            return replace(record, status=DECLINED)
        case ServiceHoursAdjusted():
            assert (event.previous_minutes, event.previous_hours) == (record.minutes, record.hours)
            return replace(record, minutes=event.minutes, hours=event.hours)
        case ServiceHoursRevoked():
            return replace(record, status=REVOKED)
        case CorrectionRequested():
            request = CorrectionRequest(len(record.requests) + 1, event.requested_minutes, event.reason, event.at)
            return replace(record, requests=(*record.requests, request))
        case CorrectionDecided():
            open_request = record.open_request
            assert open_request is not None, "a decision without a request waiting"
            decided = replace(open_request, outcome=event.outcome, decided_reason=event.reason, decided_at=event.at)
            return replace(record, requests=(*record.requests[:-1], decided))
    raise AssertionError(f"{type(event).__name__} is no service record event")


def fold(history: Iterable[Event]) -> ServiceRecord | None:
    record: ServiceRecord | None = None
    for event in history:
        record = evolve(record, event)
    return record


def counted_hours_change(event: Event) -> Decimal:
    """By how much an event changes the hours its record counts (what points credit or debit)."""
    match event:
        case ServiceHoursConfirmed():
            return event.hours
        case ServiceHoursAdjusted():
            return event.hours - event.previous_hours
        case ServiceHoursRevoked():
            return -event.hours
    return Decimal(0)


def entry_minutes(started_at: datetime, ended_at: datetime, now: datetime, minutes: int | None = None) -> int:
    """The minutes of an administrator's entry: those from start to end, or fewer if stated (a
    break); an entry is made afterwards, for one service of at most a day."""
    aware(started_at, "started_at")
    aware(ended_at, "ended_at")
    aware(now, "now")
    if ended_at <= started_at:
        raise Invalid("the service ends after it starts", field="ended_at")
    if ended_at > now:
        raise Invalid("hours are entered afterwards: the service has not ended yet", field="ended_at")
    if ended_at - started_at > MAX_ENTRY:
        raise Invalid("one entry covers one service of at most 24 hours", field="ended_at")
    span = span_minutes(started_at, ended_at)
    if minutes is None:
        return span
    if _whole_minutes(minutes) > span:
        raise Invalid(f"{minutes} minutes do not fit between the start and the end ({span})", field="minutes")
    return minutes


def draw_up(
    record_id: str,
    *,
    volunteer_number: str,
    activity_id: str,
    site_id: str,
    field: str,
    group_served: GroupServed | str,
    source: RecordSource,
    started_at: datetime,
    ended_at: datetime,
    minutes: int,
    rule: RoundingRule,
    shift_id: str | None = None,
    flag: str | None = None,
) -> list[Event]:
    """Draw up a record waiting for the organiser; `rule` is the district's in force at the start."""
    aware(started_at, "started_at")
    aware(ended_at, "ended_at")
    if ended_at < started_at:
        raise Invalid("the service ends after it starts", field="ended_at")
    if _whole_minutes(minutes) > span_minutes(started_at, ended_at):
        raise Invalid("the minutes served do not fit between the start and the end", field="minutes")
    if (source == RecordSource.attendance) != (shift_id is not None):
        raise ValueError("a record from attendance names its shift; an administrator's entry names none")
    if flag is not None:
        _code(flag, "flag")
    return [
        ServiceRecorded(
            record_id=record_id,
            volunteer_number=volunteer_number,
            activity_id=activity_id,
            shift_id=shift_id,
            site_id=site_id,
            field=field,
            group_served=GroupServed(group_served),
            service_date=city_date(started_at),
            source=source,
            started_at=started_at,
            ended_at=ended_at,
            minutes=minutes,
            hours=hours_for(minutes, rule),
            rounding=bands_of(rule),
            flag=flag,
        )
    ]


def _check_minutes(record: ServiceRecord, minutes: object) -> int:
    _whole_minutes(minutes)
    assert isinstance(minutes, int)
    if minutes > record.max_minutes:
        raise Invalid(f"{minutes} minutes is more than this record can hold ({record.max_minutes})", field="minutes")
    return minutes


def _refuse_unless(record: ServiceRecord, status: str, doing: str, hint: str = "") -> None:
    if record.status != status:
        why = f"record {record.record_id} is {record.status}: only a {status} record can be {doing}"
        raise Conflict(why + (f"; {hint}" if hint else ""), state=record.status)


def _refuse_while_requested(record: ServiceRecord, doing: str) -> None:
    waiting = record.open_request
    if waiting is not None:
        raise Conflict(
            f"record {record.record_id} cannot be {doing} while the volunteer's correction request waits: "
            "decide it first",
            state=CORRECTION_REQUESTED,
            record_status=record.status,
            requested_minutes=waiting.requested_minutes,
        )


def _confirmation(record: ServiceRecord, minutes: int, reason: str | None, now: datetime) -> ServiceHoursConfirmed:
    changed = minutes != record.recorded_minutes
    return ServiceHoursConfirmed(
        **record.attribution(),
        minutes=minutes,
        hours=hours_for(minutes, record.rule),
        adjusted_from_minutes=record.recorded_minutes if changed else None,
        reason=reason if changed else None,
        at=now,
    )


def _adjustment(record: ServiceRecord, minutes: int, reason: str, now: datetime) -> ServiceHoursAdjusted:
    return ServiceHoursAdjusted(
        **record.attribution(),
        previous_minutes=record.minutes,
        previous_hours=record.hours,
        minutes=minutes,
        hours=hours_for(minutes, record.rule),
        reason=reason,
        at=now,
    )


def confirm(
    record: ServiceRecord, now: datetime, *, minutes: int | None = None, reason: str | None = None
) -> list[Event]:
    """The organiser confirms the record's minutes, or other ones with the reason why."""
    aware(now, "now")
    target = record.minutes if minutes is None else _check_minutes(record, minutes)
    if reason is not None:
        _code(reason, "reason")
    if record.status == CONFIRMED and target == record.minutes:
        return []
    _refuse_unless(record, RECORDED, "confirmed", "adjust confirmed hours instead")
    _refuse_while_requested(record, "confirmed")
    if target != record.recorded_minutes and reason is None:
        raise Invalid("say why the minutes differ from those recorded", field="reason")
    return [_confirmation(record, target, reason, now)]


def decline(record: ServiceRecord, reason: str, now: datetime) -> list[Event]:
    """The organiser declines a record that waits: it will never count."""
    aware(now, "now")
    _code(reason, "reason")
    if record.status == DECLINED:
        return []
    _refuse_unless(record, RECORDED, "declined", "revoke confirmed hours instead")
    _refuse_while_requested(record, "declined")
    return [
        ServiceRecordDeclined(
            record_id=record.record_id, volunteer_number=record.volunteer_number, reason=reason, at=now
        )
    ]


def adjust(record: ServiceRecord, minutes: int, reason: str, now: datetime) -> list[Event]:
    """Correct confirmed minutes: one event reverses the previous hours and restates them."""
    aware(now, "now")
    minutes = _check_minutes(record, minutes)
    _code(reason, "reason")
    if record.status == CONFIRMED and minutes == record.minutes:
        return []
    _refuse_unless(record, CONFIRMED, "adjusted", "confirm a waiting record with the minutes instead")
    _refuse_while_requested(record, "adjusted")
    return [_adjustment(record, minutes, reason, now)]


def revoke(record: ServiceRecord, reason: str, now: datetime) -> list[Event]:
    """Withdraw confirmed hours (e.g. found not served); the record stays, revoked."""
    aware(now, "now")
    _code(reason, "reason")
    if record.status == REVOKED:
        return []
    _refuse_unless(record, CONFIRMED, "revoked", "decline a waiting record instead")
    _refuse_while_requested(record, "revoked")
    return [
        ServiceHoursRevoked(**record.attribution(), minutes=record.minutes, hours=record.hours, reason=reason, at=now)
    ]


def request_correction(
    record: ServiceRecord, by: str, reason: str, now: datetime, *, requested_minutes: int | None = None
) -> list[Event]:
    """The volunteer themself asks for a correction, while the record waits or counts; one request
    waits at a time."""
    aware(now, "now")
    if by != record.volunteer_number:
        raise Invalid(
            f"only the volunteer themself ({record.volunteer_number}) may ask to correct this record", field="actor"
        )
    _code(reason, "reason")
    if requested_minutes is not None:
        _check_minutes(record, requested_minutes)
    waiting = record.open_request
    if waiting is not None:
        if (waiting.requested_minutes, waiting.reason) == (requested_minutes, reason):
            return []
        raise Conflict(
            f"a correction request of record {record.record_id} already waits for an answer",
            state=CORRECTION_REQUESTED,
            record_status=record.status,
            requested_minutes=waiting.requested_minutes,
        )
    if record.status not in (RECORDED, CONFIRMED):
        raise Conflict(
            f"record {record.record_id} is {record.status}: only a waiting or confirmed record can be corrected",
            state=record.status,
        )
    return [
        CorrectionRequested(
            record_id=record.record_id,
            volunteer_number=record.volunteer_number,
            requested_minutes=requested_minutes,
            reason=reason,
            at=now,
        )
    ]


def decide_correction(
    record: ServiceRecord, outcome: CorrectionOutcome | str, reason: str, now: datetime, *, minutes: int | None = None
) -> list[Event]:
    """The organiser answers the waiting request. Granted: the minutes given, or else those the
    volunteer asked for, are confirmed (a waiting record) or the confirmed ones adjusted."""
    aware(now, "now")
    try:
        outcome = CorrectionOutcome(outcome)
    except ValueError:
        raise Invalid(f"a request is granted or refused, not {outcome!r}", field="outcome") from None
    _code(reason, "reason")
    if minutes is not None:
        _check_minutes(record, minutes)
        if outcome == CorrectionOutcome.refused:
            raise Invalid("a refused request changes no minutes", field="minutes")
    waiting = record.open_request
    if waiting is None:
        last = record.requests[-1] if record.requests else None
        if last is not None and last.outcome == outcome and (minutes is None or minutes == record.minutes):
            return []
        raise Conflict(f"no correction request of record {record.record_id} waits for an answer", state=NO_OPEN_REQUEST)
    decided: list[Event] = [
        CorrectionDecided(
            record_id=record.record_id, volunteer_number=record.volunteer_number, outcome=outcome, reason=reason, at=now
        )
    ]
    if outcome == CorrectionOutcome.refused:
        return decided
    target = minutes if minutes is not None else waiting.requested_minutes
    if target is None:
        raise Invalid("the request named no minutes: say the minutes granted", field="minutes")
    if record.status == RECORDED:
        decided.append(_confirmation(record, target, reason, now))
    elif target != record.minutes:
        decided.append(_adjustment(record, target, reason, now))
    return decided
