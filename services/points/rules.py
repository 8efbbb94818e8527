"""Points rules, pure: which district rule prices a day's service, how many points it earns,
when they expire, and how many stars a volunteer's hours make."""

from __future__ import annotations

import functools
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from shared.errors import Invalid, NotFound
from shared.events.points import Campaign, Expiry, ExpiryKind, PointsRuleSet, RateOverride

# Where a district has set no rule: 10 points an hour, at most 100 a day, expiring at the end
# of the year after they were credited (version 0 marks it as Beacon's default).
DEFAULT_POINTS_PER_HOUR = Decimal(10)
DEFAULT_DAILY_CAP = 100
DEFAULT_STAR_THRESHOLDS: tuple[Decimal, ...] = tuple(Decimal(h) for h in (100, 300, 600, 1000, 1500))


@functools.cache  # one per district: building the model for every event would cost more than pricing it
def default_rule(district_code: str) -> PointsRuleSet:
    return PointsRuleSet(
        district_code=district_code,
        version=1,  # stands for version 0 (see RuleBook.version_of); the model wants ≥ 1
        effective_from=date(2000, 1, 1),
        points_per_hour=DEFAULT_POINTS_PER_HOUR,
        daily_cap=DEFAULT_DAILY_CAP,
    )


@dataclass
class RuleBook:
    """Every district's rule versions, in the order they were set."""

    by_district: dict[str, list[PointsRuleSet]] = field(default_factory=dict)

    def add(self, rule: PointsRuleSet) -> None:
        self.by_district.setdefault(rule.district_code, []).append(rule)

    def next_version(self, district_code: str) -> int:
        return len(self.by_district.get(district_code, ())) + 1

    def versions(self, district_code: str) -> list[PointsRuleSet]:
        return list(self.by_district.get(district_code, ()))

    def in_force(self, district_code: str, day: date) -> tuple[int, PointsRuleSet]:
        """The rule for service on `day`: the latest effective date on or before it; of rules
        from the same date, the later version. Version 0 is Beacon's default."""
        rules = self.by_district.get(district_code)
        if rules:
            chosen = max(
                (r for r in rules if r.effective_from <= day),
                key=lambda r: (r.effective_from, r.version),
                default=None,
            )
            if chosen is not None:
                return chosen.version, chosen
        return 0, default_rule(district_code)

    def version(self, district_code: str, version: int) -> PointsRuleSet:
        if version == 0:
            return default_rule(district_code)
        for rule in self.by_district.get(district_code, ()):
            if rule.version == version:
                return rule
        raise NotFound(f"district {district_code} has no points rule version {version}")


def check_rule(rule: PointsRuleSet) -> None:
    """What the model cannot check alone: one override per field and group pair."""
    seen: set[tuple[str | None, str | None]] = set()
    for index, override in enumerate(rule.overrides):
        key = (override.field, override.group_served)
        if key in seen:
            raise Invalid("two overrides for the same field and group served", field=f"overrides.{index}")
        seen.add(key)


def rate(rule: PointsRuleSet, service_field: str, group_served: str) -> Decimal:
    """The most specific rate: field and group, then field, then group, then the rule's own."""
    best: RateOverride | None = None
    best_rank = 0
    for override in rule.overrides:
        if override.field not in (None, service_field) or override.group_served not in (None, group_served):
            continue
        rank = (2 if override.field else 0) + (1 if override.group_served else 0)
        if rank > best_rank:
            best, best_rank = override, rank
    return best.points_per_hour if best else rule.points_per_hour


def multiplier(campaigns: list[Campaign], service_field: str, day: date) -> Decimal:
    """Campaigns on the same day multiply together."""
    product = Decimal(1)
    for campaign in campaigns:
        if campaign.starts_on <= day <= campaign.ends_on and campaign.field in (None, service_field):
            product *= campaign.multiplier
    return product


def points_for(rule: PointsRuleSet, hours: Decimal, service_field: str, group_served: str, day: date) -> int:
    """Whole points for `hours` of service on `day`, before the daily cap; fractions are dropped."""
    exact = hours * rate(rule, service_field, group_served) * multiplier(rule.campaigns, service_field, day)
    return int(exact.to_integral_value(rounding=ROUND_FLOOR))


def capped(rule: PointsRuleSet, uncapped: int, earned_that_day_elsewhere: int) -> int:
    """What the daily cap leaves of `uncapped`, given the volunteer's other points that day."""
    if rule.daily_cap is None:
        return uncapped
    return max(0, min(uncapped, rule.daily_cap - earned_that_day_elsewhere))


def expires_on(expiry: Expiry, credited_on: date) -> date | None:
    if expiry.kind == ExpiryKind.never:
        return None
    if expiry.kind == ExpiryKind.end_of_following_year:
        return date(credited_on.year + 1, 12, 31)
    years = expiry.years or 0
    try:
        return credited_on.replace(year=credited_on.year + years)
    except ValueError:  # 29 February
        return credited_on.replace(year=credited_on.year + years, day=28)


def star_level(hours: Decimal, thresholds: tuple[Decimal, ...]) -> int:
    return bisect_right(thresholds, hours)
