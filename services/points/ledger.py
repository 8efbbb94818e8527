"""The ledger's rules, pure: what confirmed, adjusted and revoked service does to a volunteer's
points, time credits and stars; spending oldest-expiring points first; debts; expiry.

The state here is what the tables hold; the adapters load it for a batch, let these functions
decide, and write back the state and the events in one transaction. Folding the events alone
(`fold`) gives the same state: that is how the ledger is checked against its history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from services.points import rules
from services.points.rules import RuleBook
from shared.errors import Conflict
from shared.events.dispatch import RecordSource, ServiceHoursAdjusted, ServiceHoursConfirmed, ServiceHoursRevoked
from shared.events.points import (
    LotShare,
    PointsExpired,
    RedemptionCancelled,
    RedemptionReserved,
    ServiceChange,
    ServiceCredited,
    ServiceDebited,
    StarLevelAwarded,
    StarLevelLowered,
    TimeCreditsReleased,
    TimeCreditsReserved,
    TimeCreditsTransferred,
)

ServiceEvent = ServiceHoursConfirmed | ServiceHoursAdjusted | ServiceHoursRevoked
ZERO = Decimal(0)
NEVER = date.max  # sorts credits that never expire after every dated one


def minutes_of(hours: Decimal) -> int:
    return int(hours * 60)


@dataclass
class Account:
    """A volunteer's points, as lots by expiry date, a debt, their hours, time credits, stars."""

    volunteer_number: str
    district_code: str
    lots: dict[date | None, int] = field(default_factory=dict)
    debt: int = 0
    hours: Decimal = ZERO
    time_minutes: int = 0
    time_debt: int = 0
    star_level: int = 0

    @property
    def balance(self) -> int:
        """Points available; negative only by a debt a revocation left."""
        return sum(self.lots.values()) - self.debt

    @property
    def time_balance(self) -> int:
        return self.time_minutes - self.time_debt

    def credit(self, points: int, expires: date | None) -> int:
        """Add points; a debt is repaid first. Returns the points that repaid debt."""
        repaid = min(self.debt, points)
        self.debt -= repaid
        if points > repaid:
            self.lots[expires] = self.lots.get(expires, 0) + points - repaid
        return repaid

    def take(self, points: int, *, into_debt: bool) -> tuple[list[LotShare], int]:
        """Take points, the soonest to expire first. What is missing becomes a debt when
        `into_debt` (a revocation), else nothing is taken and it is refused."""
        if not into_debt and points > self.balance:
            raise Conflict(
                f"volunteer {self.volunteer_number} has {max(self.balance, 0)} points, {points} are needed",
                balance=max(self.balance, 0),
                needed=points,
            )
        shares: list[LotShare] = []
        left = points
        for expires in sorted(self.lots, key=lambda d: d or NEVER):
            if not left:
                break
            share = min(self.lots[expires], left)
            self.lots[expires] -= share
            if not self.lots[expires]:
                del self.lots[expires]
            shares.append(LotShare(expires_on=expires, points=share))
            left -= share
        self.debt += left
        return shares, left

    def give_back(self, shares: Iterable[LotShare]) -> None:
        for share in shares:
            self.credit(share.points, share.expires_on)

    def expire(self, today: date) -> list[tuple[date, int]]:
        """Remove the lots that expired before `today` (a lot lasts through its date)."""
        due = [(d, p) for d, p in self.lots.items() if d is not None and d < today and p > 0]
        for expires, _ in due:
            del self.lots[expires]
        return sorted(due)

    def credit_time(self, minutes: int) -> None:
        repaid = min(self.time_debt, minutes)
        self.time_debt -= repaid
        self.time_minutes += minutes - repaid

    def take_time(self, minutes: int, *, into_debt: bool) -> int:
        if not into_debt and minutes > self.time_balance:
            raise Conflict(
                f"volunteer {self.volunteer_number} has {max(self.time_balance, 0)} minutes of time credits, "
                f"{minutes} are needed",
                balance_minutes=max(self.time_balance, 0),
                needed_minutes=minutes,
            )
        taken = min(self.time_minutes, minutes)
        self.time_minutes -= taken
        self.time_debt += minutes - taken
        return minutes - taken


@dataclass
class Record:
    """What the ledger keeps of one service record: what it has counted so far."""

    record_id: str
    volunteer_number: str
    service_district: str
    service_date: date
    field: str
    group_served: str
    source: str
    rule_version: int
    version: int = 0  # the record's last aggregate version applied (dispatch's numbering)
    hours: Decimal = ZERO
    points: int = 0
    minutes: int = 0


@dataclass
class Posting:
    """The ledger's answer to one service event."""

    events: list[ServiceCredited | ServiceDebited | StarLevelAwarded | StarLevelLowered]
    day_points_delta: int = 0


class Waits(Exception):
    """The event cannot be applied yet (its record's confirmation has not arrived): it waits."""


def post(
    account: Account,
    record: Record | None,
    event: ServiceEvent,
    version: int,
    *,
    district_of_service: str,
    credited_on: date,
    rules_book: RuleBook,
    day_points: int,
    thresholds: tuple[Decimal, ...],
) -> tuple[Record, Posting]:
    """Apply one of dispatch's hour-bearing events to the account and the record's counts.

    `day_points` is what the volunteer has earned for service on the event's day so far; the
    record's own points are part of it. A record the ledger has not seen must start with its
    confirmation; anything else waits for it.
    """
    if record is None:
        if not isinstance(event, ServiceHoursConfirmed):
            raise Waits(f"record {event.record_id} has no confirmation yet")
        rule_version, _ = rules_book.in_force(district_of_service, event.service_date)
        record = Record(
            event.record_id,
            event.volunteer_number,
            district_of_service,
            event.service_date,
            event.field,
            event.group_served,
            event.source,
            rule_version,
        )
    record.version = version
    change = _CHANGES[type(event)]
    new_hours = ZERO if change is ServiceChange.revoked else event.hours
    rule = rules_book.version(record.service_district, record.rule_version)
    capped_from: int | None = None
    if record.source == RecordSource.admin_entry or not new_hours:
        new_points = 0
    else:
        uncapped = rules.points_for(rule, new_hours, record.field, record.group_served, record.service_date)
        new_points = rules.capped(rule, uncapped, day_points - record.points)
        if new_points < uncapped:
            capped_from = uncapped - record.points
    hours_delta = new_hours - record.hours
    points_delta = new_points - record.points
    minutes_delta = minutes_of(new_hours) - record.minutes
    posting = Posting([], points_delta)
    common = {
        "volunteer_number": account.volunteer_number,
        "record_id": record.record_id,
        "change": change,
        "service_date": record.service_date,
        "service_district": record.service_district,
        "rule_version": record.rule_version,
    }
    # An adjustment can move hours and points in opposite directions (lower hours whose points
    # rise because another record freed the day's cap, or the reverse): what went down is
    # debited, then what went up is credited, so each event's amounts stay non-negative.
    taken_hours, taken_points, taken_minutes = max(-hours_delta, ZERO), max(-points_delta, 0), max(-minutes_delta, 0)
    given_hours, given_points, given_minutes = max(hours_delta, ZERO), max(points_delta, 0), max(minutes_delta, 0)
    if taken_hours or taken_points or taken_minutes:
        _, debt = account.take(taken_points, into_debt=True)
        time_debt = account.take_time(taken_minutes, into_debt=True)
        account.hours -= taken_hours
        posting.events.append(
            ServiceDebited(
                **common,
                hours=taken_hours,
                points=taken_points,
                time_credit_minutes=taken_minutes,
                total_hours=account.hours,
                debt_incurred=debt,
                time_debt_incurred=time_debt,
            )
        )
    if given_hours or given_points or given_minutes:
        expires = rules.expires_on(rule.expiry, credited_on) if given_points else None
        repaid = account.credit(given_points, expires) if given_points else 0
        account.credit_time(given_minutes)
        account.hours += given_hours
        posting.events.append(
            ServiceCredited(
                **common,
                hours=given_hours,
                points=given_points,
                time_credit_minutes=given_minutes,
                total_hours=account.hours,
                expires_on=expires,
                capped_from=capped_from if given_points else None,
                debt_repaid=repaid,
            )
        )
    record.hours, record.points, record.minutes = new_hours, new_points, minutes_of(new_hours)
    posting.events.extend(restar(account, thresholds))
    return record, posting


_CHANGES = {
    ServiceHoursConfirmed: ServiceChange.confirmed,
    ServiceHoursAdjusted: ServiceChange.adjusted,
    ServiceHoursRevoked: ServiceChange.revoked,
}


def restar(account: Account, thresholds: tuple[Decimal, ...]) -> list[StarLevelAwarded | StarLevelLowered]:
    level = rules.star_level(account.hours, thresholds)
    previous, account.star_level = account.star_level, level
    if level == previous:
        return []
    change = StarLevelAwarded if level > previous else StarLevelLowered
    return [
        change(
            volunteer_number=account.volunteer_number,
            star_level=level,
            previous_star_level=previous,
            total_hours=account.hours,
        )
    ]


def expire(account: Account, today: date) -> list[PointsExpired]:
    return [
        PointsExpired(volunteer_number=account.volunteer_number, points=points, expires_on=expires)
        for expires, points in account.expire(today)
    ]


# --- Rebuilding from the events ---------------------------------------------------------------


def fold(accounts: dict[str, Account], event: object) -> None:
    """Apply one of points' own recorded events to the accounts it moves (a rebuild from history)."""
    match event:
        case ServiceCredited():
            account = accounts[event.volunteer_number]
            account.credit(event.points, event.expires_on)
            account.credit_time(event.time_credit_minutes)
            account.hours += event.hours
        case ServiceDebited():
            account = accounts[event.volunteer_number]
            account.take(event.points, into_debt=True)
            account.take_time(event.time_credit_minutes, into_debt=True)
            account.hours -= event.hours
        case PointsExpired():
            accounts[event.volunteer_number].lots.pop(event.expires_on, None)
        case StarLevelAwarded() | StarLevelLowered():
            accounts[event.volunteer_number].star_level = event.star_level
        case RedemptionReserved():
            account = accounts[event.volunteer_number]
            for share in event.taken_from:
                account.lots[share.expires_on] -= share.points
                if not account.lots[share.expires_on]:
                    del account.lots[share.expires_on]
        case RedemptionCancelled():
            accounts[event.volunteer_number].give_back(event.returned)
        case TimeCreditsTransferred():
            accounts[event.volunteer_number].take_time(event.minutes, into_debt=False)
            accounts[event.member_number].credit_time(event.minutes)
        case TimeCreditsReserved():
            accounts[event.volunteer_number].take_time(event.minutes, into_debt=False)
        case TimeCreditsReleased():
            accounts[event.volunteer_number].credit_time(event.minutes)
