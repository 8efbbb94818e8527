"""Points' public events: rules, the ledger of points and time credits, the shop, the time bank
and star levels.

The ledger is double-entry. Every movement takes an amount from one account and gives it to
another, so the books always balance; each event below names the movement it records:

- `volunteer:<number>`: a volunteer's points; `volunteer-time:<number>`: their time credits.
- `issuance:<district>`: where the district's points come from (its balance is minus all it
  issued); `time-issuance:<city>`: where time credits come from (they are valid city-wide).
- `expiry:<district>`: expired points; `shop:<site>`: points paid for goods handed over;
  `shop-held:<site>`: points of redemptions reserved, not yet handed over;
  `time-held:<city>`: time credits reserved for an order; `time-spent:<city>`: spent ones.

Points are whole numbers; time credits are minutes. No event carries personal data.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.catalog import Event, catalog
from shared.events.common import DivisionCode, ReservationId, SiteId, VolunteerNumber
from shared.events.dispatch import GroupServed, Hours, OrderId, Reason, RecordId, ServiceField

ItemId = Annotated[str, StringConstraints(pattern=r"^I\d{8,12}$")]
RedemptionId = Annotated[str, StringConstraints(pattern=r"^RD\d{8,12}$")]
Points = Annotated[int, Field(ge=0, le=10**9)]
Minutes = Annotated[int, Field(ge=0, le=10**9)]
CITY = "city"
# City-wide facts (star thresholds, the time bank's limit) have no district: their subject says 0.
CITY_ORG_PATH = ("0",)


# --- Rules -----------------------------------------------------------------------------------------


class RateOverride(BaseModel):
    """Points per hour for one field, one group served, or both; the most specific one applies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: ServiceField | None = None
    group_served: GroupServed | None = None
    points_per_hour: Decimal = Field(ge=0, le=1000, max_digits=7, decimal_places=2)

    @model_validator(mode="after")
    def _names_something(self) -> RateOverride:
        if self.field is None and self.group_served is None:
            raise ValueError("an override names a field, a group served, or both")
        return self


class Campaign(BaseModel):
    """A campaign multiplies the points of service on its days (for one field, or all)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    multiplier: Decimal = Field(gt=0, le=10, max_digits=4, decimal_places=2)
    starts_on: date
    ends_on: date
    field: ServiceField | None = None

    @model_validator(mode="after")
    def _in_order(self) -> Campaign:
        if self.ends_on < self.starts_on:
            raise ValueError("a campaign ends on or after the day it starts")
        return self


class ExpiryKind(StrEnum):
    end_of_following_year = "end_of_following_year"
    after_years = "after_years"
    never = "never"


class Expiry(BaseModel):
    """When points credited on a day expire: at the end of the year after (31 Dec of the next
    year), or `years` after the day, or never."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ExpiryKind = ExpiryKind.end_of_following_year
    years: int | None = Field(default=None, ge=1, le=50)

    @model_validator(mode="after")
    def _years_when_needed(self) -> Expiry:
        if (self.kind == ExpiryKind.after_years) != (self.years is not None):
            raise ValueError("years is given exactly when the kind is after_years")
        return self


@catalog.register(context="points", aggregate="points_rule", action="set")
class PointsRuleSet(Event):
    """A district's points rule, version `version` (1, 2, …), for service on or after
    `effective_from`. Service earns `points_per_hour` per confirmed hour, or the most specific
    override's rate (field and group, then field, then group), times the campaigns' multipliers
    on that day; the points of one volunteer's service on one day are capped at `daily_cap`.
    Hours an administrator entered afterwards earn none. Credited points expire by `expiry`.
    A later version with the same `effective_from` replaces an earlier one for those days."""

    district_code: DivisionCode
    version: int = Field(ge=1)
    effective_from: date
    points_per_hour: Decimal = Field(ge=0, le=1000, max_digits=7, decimal_places=2)
    overrides: list[RateOverride] = Field(default_factory=list, max_length=200)
    campaigns: list[Campaign] = Field(default_factory=list, max_length=50)
    daily_cap: Points | None = Field(default=None, description="None: no cap.")
    expiry: Expiry = Field(default_factory=Expiry)


@catalog.register(context="points", aggregate="star_thresholds", action="set")
class StarThresholdsSet(Event):
    """The city's star thresholds: cumulative confirmed hours for one to five stars, rising.
    Every volunteer's level is re-evaluated (StarLevelAwarded/StarLevelLowered follow)."""

    hours: list[Hours] = Field(min_length=5, max_length=5)

    @model_validator(mode="after")
    def _rising(self) -> StarThresholdsSet:
        if any(later <= earlier for earlier, later in zip(self.hours, self.hours[1:])):
            raise ValueError("each star needs more hours than the one below it")
        if self.hours[0] <= 0:
            raise ValueError("one star needs some hours")
        return self


# --- The account: service credited and debited, expiry, stars ---------------------------------


@catalog.register(context="points", aggregate="account", action="opened")
class PointsAccountOpened(Event):
    """A volunteer's account opened (nothing in it); it follows their registration. Service
    events for a volunteer whose account is not open yet wait for it."""

    volunteer_number: VolunteerNumber


class ServiceChange(StrEnum):
    confirmed = "confirmed"
    adjusted = "adjusted"
    revoked = "revoked"


class _Posting(Event):
    """What a credit or debit for a service record repeats, so that a consumer needs no other."""

    volunteer_number: VolunteerNumber
    record_id: RecordId
    change: ServiceChange = Field(description="The record's change in dispatch that caused it.")
    service_date: date
    service_district: DivisionCode = Field(description="Where the service was done; its rule applies.")
    hours: Hours = Field(description="Confirmed hours added (credit) or taken away (debit).")
    points: Points
    time_credit_minutes: Minutes
    rule_version: int | None = Field(
        default=None, ge=0, description="The service district's rule version that priced it; 0: Beacon's default."
    )
    total_hours: Hours = Field(description="The volunteer's confirmed hours after this posting.")


@catalog.register(context="points", aggregate="account", action="service_credited")
class ServiceCredited(_Posting):
    """Confirmed service (or an adjustment upwards) credited: `points` move from
    `issuance:<service district>` to the volunteer, `time_credit_minutes` from
    `time-issuance:city` to their time credits. A debt left by a revocation is repaid first
    (`debt_repaid` of the points). Hours entered by an administrator earn no points (0) but
    count as hours and time credits. `capped_from` is set when the daily cap cut the points.
    At most one per dispatch event (the causation id): a redelivery credits nothing twice. An
    adjustment that lowers hours but raises points (the day's cap freed by another record), or
    the reverse, gives a `ServiceDebited` and then a `ServiceCredited`, each with its own part."""

    expires_on: date | None = Field(default=None, description="When these points expire; None: never.")
    capped_from: Points | None = None
    debt_repaid: Points = 0


@catalog.register(context="points", aggregate="account", action="service_debited")
class ServiceDebited(_Posting):
    """Confirmed service revoked or adjusted downwards: `points` go back from the volunteer to
    `issuance:<service district>` (oldest-expiring points first), `time_credit_minutes` back to
    `time-issuance:city`. What the balance cannot cover becomes a debt (`debt_incurred`), the only
    way a balance goes below zero; later credits repay it first."""

    debt_incurred: Points = 0
    time_debt_incurred: Minutes = 0


@catalog.register(context="points", aggregate="account", action="points_expired")
class PointsExpired(Event):
    """Points credited with this expiry date and not spent expired: they move from the volunteer
    to `expiry:<district>` (the account's district)."""

    volunteer_number: VolunteerNumber
    points: Points
    expires_on: date


@catalog.register(context="points", aggregate="account", action="star_level_awarded", version=2)
class StarLevelAwarded(Event):
    """The volunteer's cumulative confirmed hours (`total_hours`) reached the city's threshold for
    `star_level` stars (1–5); they held `previous_star_level` before (0: none). Several stars at
    once are one event. Version 2 names the levels as points' API does (v1: `level` and
    `previous_level`)."""

    volunteer_number: VolunteerNumber
    star_level: int = Field(ge=1, le=5)
    previous_star_level: int = Field(ge=0, le=5)
    total_hours: Hours


@catalog.register(context="points", aggregate="account", action="star_level_lowered", version=2)
class StarLevelLowered(Event):
    """Revoked hours (or raised thresholds) took the volunteer below their level's threshold: they
    hold `star_level` stars now (0: none), `previous_star_level` before. Version 2 names the
    levels as points' API does (v1: `level` and `previous_level`)."""

    volunteer_number: VolunteerNumber
    star_level: int = Field(ge=0, le=5)
    previous_star_level: int = Field(ge=1, le=5)
    total_hours: Hours


# Superseded versions: the stream keeps their messages for good, and every reader is given them
# as the current version (shared/catalog.py). Nothing publishes them any more.


@catalog.register(
    context="points", aggregate="account", action="star_level_awarded", version=1, name="StarLevelAwarded"
)
class StarLevelAwardedV1(Event):
    """Superseded by version 2 (same meaning, levels renamed): the volunteer's cumulative
    confirmed hours reached `level` stars (1–5)."""

    volunteer_number: VolunteerNumber
    level: int = Field(ge=1, le=5)
    previous_level: int = Field(ge=0, le=5)
    total_hours: Hours


@catalog.register(
    context="points", aggregate="account", action="star_level_lowered", version=1, name="StarLevelLowered"
)
class StarLevelLoweredV1(Event):
    """Superseded by version 2 (same meaning, levels renamed): revoked hours (or raised
    thresholds) took the volunteer below their level's threshold."""

    volunteer_number: VolunteerNumber
    level: int = Field(ge=0, le=5)
    previous_level: int = Field(ge=1, le=5)
    total_hours: Hours


@catalog.upcaster(StarLevelAwardedV1, StarLevelAwarded)
@catalog.upcaster(StarLevelLoweredV1, StarLevelLowered)
def star_levels_renamed(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 → v2 of the star events: `level` is `star_level`, `previous_level` `previous_star_level`."""
    rest = {k: v for k, v in payload.items() if k not in ("level", "previous_level")}
    return rest | {"star_level": payload["level"], "previous_star_level": payload["previous_level"]}


class LotShare(BaseModel):
    """Points taken from (or returned to) the credits that expire on one day (None: never)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expires_on: date | None
    points: Points


# --- Shop (爱心超市) ---------------------------------------------------------------------------------


@catalog.register(context="points", aggregate="shop_item", action="listed")
class ShopItemListed(Event):
    """A site's shop offers goods or a service for points, with `stock` units in hand."""

    item_id: ItemId
    site_id: SiteId
    name: Annotated[str, StringConstraints(min_length=1, max_length=80, strip_whitespace=True)]
    price_points: int = Field(ge=1, le=10**6)
    stock: int = Field(ge=0, le=10**6)


@catalog.register(context="points", aggregate="shop_item", action="restocked")
class ShopItemRestocked(Event):
    """`added` units came in; `stock` is what the shop now has for redemption."""

    item_id: ItemId
    added: int = Field(ge=1, le=10**6)
    stock: int = Field(ge=0)


@catalog.register(context="points", aggregate="shop_item", action="repriced")
class ShopItemRepriced(Event):
    """A new price for redemptions from now; reserved ones keep theirs."""

    item_id: ItemId
    price_points: int = Field(ge=1, le=10**6)


@catalog.register(context="points", aggregate="shop_item", action="withdrawn")
class ShopItemWithdrawn(Event):
    """No longer offered; redemptions already reserved can still be handed over or cancelled."""

    item_id: ItemId


@catalog.register(context="points", aggregate="redemption", action="reserved")
class RedemptionReserved(Event):
    """A volunteer redeemed points for `quantity` of an item: the stock is reserved and `points`
    move from the volunteer to `shop-held:<site>`, in one transaction."""

    redemption_id: RedemptionId
    volunteer_number: VolunteerNumber
    item_id: ItemId
    site_id: SiteId
    quantity: int = Field(ge=1, le=100)
    points: Points
    taken_from: list[LotShare] = Field(
        max_length=200, description="The volunteer's points this took, oldest-expiring first; a cancel returns them."
    )
    at: AwareDatetime


@catalog.register(context="points", aggregate="redemption", action="handed_over")
class RedemptionHandedOver(Event):
    """The site handed the goods over: the points move from `shop-held:<site>` to `shop:<site>`."""

    redemption_id: RedemptionId
    volunteer_number: VolunteerNumber
    site_id: SiteId
    points: Points
    at: AwareDatetime


@catalog.register(context="points", aggregate="redemption", action="cancelled")
class RedemptionCancelled(Event):
    """A reserved redemption was cancelled: the stock returns to the item and the points from
    `shop-held:<site>` to the volunteer (with the expiry dates they had)."""

    redemption_id: RedemptionId
    volunteer_number: VolunteerNumber
    item_id: ItemId
    site_id: SiteId
    quantity: int = Field(ge=1, le=100)
    points: Points
    returned: list[LotShare] = Field(
        max_length=200, description="Where the points went back: the expiry dates they were taken from."
    )
    reason: Reason
    at: AwareDatetime


# --- Time bank (时间银行) ------------------------------------------------------------------------------


class Relation(StrEnum):
    parent = "parent"
    spouse = "spouse"
    child = "child"
    grandparent = "grandparent"
    grandchild = "grandchild"
    sibling = "sibling"


@catalog.register(context="points", aggregate="account", action="family_member_linked")
class FamilyMemberLinked(Event):
    """The volunteer registered a family member (also registered in Beacon, with an account) to
    whom they may give time credits and for whom they may spend them."""

    volunteer_number: VolunteerNumber
    member_number: VolunteerNumber
    relation: Relation


@catalog.register(context="points", aggregate="account", action="family_member_unlinked")
class FamilyMemberUnlinked(Event):
    """The family member is no longer linked; what was given stays given."""

    volunteer_number: VolunteerNumber
    member_number: VolunteerNumber


@catalog.register(context="points", aggregate="time_bank_rule", action="transfer_limit_set")
class TimeTransferLimitSet(Event):
    """How many minutes of time credits a volunteer may give to family in a calendar year (city-wide)."""

    minutes_per_year: Minutes


@catalog.register(context="points", aggregate="account", action="time_credits_transferred")
class TimeCreditsTransferred(Event):
    """Time credits given to a linked family member: `minutes` move from `volunteer-time:<giver>`
    to `volunteer-time:<member>`. `given_this_year` counts the giver's gifts in the calendar year
    (city time), this one included; it never passes the year's limit."""

    volunteer_number: VolunteerNumber
    member_number: VolunteerNumber
    minutes: Minutes
    year: int = Field(ge=2000, le=2200)
    given_this_year: Minutes


@catalog.register(context="points", aggregate="time_credit_reservation", action="reserved")
class TimeCreditsReserved(Event):
    """Time credits set aside to pay for an order for the volunteer or a linked family member
    (`beneficiary_number`): `minutes` move from `volunteer-time:<volunteer>` to
    `time-held:city`. Dispatch takes an order that names the reservation until `expires_at`;
    unused by then, the credits go back (TimeCreditsReleased). Valid in any district of the city."""

    reservation_id: ReservationId
    volunteer_number: VolunteerNumber
    beneficiary_number: VolunteerNumber
    minutes: Minutes
    expires_at: AwareDatetime
    at: AwareDatetime


class ReleaseReason(StrEnum):
    unused = "unused"
    withdrawn = "withdrawn"
    order_cancelled = "order_cancelled"


@catalog.register(context="points", aggregate="time_credit_reservation", action="spent")
class TimeCreditsSpent(Event):
    """The order the reservation paid for was served: the minutes move from `time-held:city` to
    `time-spent:city`, for good."""

    reservation_id: ReservationId
    volunteer_number: VolunteerNumber
    order_id: OrderId
    minutes: Minutes
    at: AwareDatetime


@catalog.register(context="points", aggregate="time_credit_reservation", action="released")
class TimeCreditsReleased(Event):
    """The reserved minutes went back from `time-held:city` to the volunteer: the reservation
    was not used in time, the volunteer withdrew it, or its order was cancelled."""

    reservation_id: ReservationId
    volunteer_number: VolunteerNumber
    minutes: Minutes
    reason: ReleaseReason
    order_id: OrderId | None = None
    at: AwareDatetime
