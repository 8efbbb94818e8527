"""Points' ledger routes: accounts and statements, rules, stars and the partner check, the shop
and its redemptions, district figures, and the ledger's own checks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import and_, case, func, or_, select

from services.points import handlers, store
from services.points.api.reach import (
    Row,
    VolunteerPath,
    account_for_star_check,
    account_in_reach,
    district_in_reach,
    item_in_reach,
    reached_account,
    reached_item,
    redemption_in_reach,
    shop_in_reach,
    site_in_reach,
)
from services.points.books import MINUTES, POINTS
from services.points.handlers import Item, Redemption
from services.points.rules import DEFAULT_STAR_THRESHOLDS
from shared.auth import STAFF, Role
from shared.db import reading
from shared.errors import Invalid
from shared.events.common import SiteId, VolunteerNumber
from shared.events.dispatch import Hours, Reason
from shared.events.points import Campaign, Expiry, ItemId, Points, RateOverride, RedemptionId, StarThresholdsSet
from shared.web import CurrentActor, allow, events_of, now_of, problems

router = APIRouter()

Limit = Annotated[int, Query(ge=1, le=500)]


AccountInReach = Annotated[Row, Depends(account_in_reach)]
SiteInReach = Annotated[Row, Depends(site_in_reach)]
ItemInReach = Annotated[Row, Depends(item_in_reach)]
RedemptionInReach = Annotated[Row, Depends(redemption_in_reach)]
DistrictInReach = Annotated[str, Depends(district_in_reach)]
DISTRICT_STAFF = (Role.city_admin, Role.district_admin)


# --- Accounts -------------------------------------------------------------------------------------


@router.get("/accounts/{volunteer_number}", **allow(*STAFF, Role.volunteer), tags=["accounts"], responses=problems(404))
async def get_account(volunteer_number: VolunteerPath, row: AccountInReach, request: Request) -> dict[str, Any]:
    """Points available (negative only by a debt a revocation left), debt, confirmed hours,
    time credits, star level, and when the points expire. For the volunteer themselves and staff
    over their community."""
    async with reading(events_of(request).engine) as conn:
        lots = await conn.execute(
            select(store.point_lots.c.expires_on, store.point_lots.c.points)
            .where(store.point_lots.c.volunteer_number == volunteer_number)
            .order_by(store.point_lots.c.expires_on)
        )
        expiring = [{"expires_on": None if d == store.NEVER else d.isoformat(), "points": p} for d, p in lots]
    return {
        "volunteer_number": volunteer_number,
        "district_code": row["district_code"],
        "balance": row["balance"],
        "debt": row["debt"],
        "hours": str(Decimal(row["hours"])),
        "time_credit_minutes": row["time_minutes"] - row["time_debt"],
        "time_debt_minutes": row["time_debt"],
        "star_level": row["star_level"],
        "expiring": expiring,
        "opened_at": row["opened_at"].isoformat(),
    }


@router.get(
    "/accounts/{volunteer_number}/statement",
    **allow(*STAFF, Role.volunteer),
    tags=["accounts"],
    responses=problems(404),
)
async def statement(
    volunteer_number: VolunteerPath,
    account_row: AccountInReach,
    request: Request,
    unit: Annotated[str, Query(pattern=f"^({POINTS}|{MINUTES})$")] = POINTS,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="The last entry's position of the page before.")] = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The volunteer's ledger entries, oldest first, each with the balance after it. For the
    volunteer themselves and staff over their community."""
    account = f"{'volunteer' if unit == POINTS else 'volunteer-time'}:{volunteer_number}"
    j = store.journal.c
    mine = and_(j.unit == unit, or_(j.from_account == account, j.to_account == account))
    signed = func.coalesce(func.sum(case((j.to_account == account, j.amount), else_=-j.amount)), 0)
    async with reading(events_of(request).engine) as conn:
        before = int(await conn.scalar(select(signed).where(mine, j.position <= after)) or 0)
        rows = await conn.execute(
            select(
                j.position,
                store.schema.events.c.recorded_at,
                j.event_id,
                j.from_account,
                j.to_account,
                j.amount,
                store.schema.events.c.event_type,
            )
            .join(store.schema.events, store.schema.events.c.event_id == j.event_id)
            .where(mine, j.position > after)
            .order_by(j.position)
            .limit(limit)
        )
        entries, balance = [], before
        for position, at, event_id, source, target, amount, event_type in rows:
            change = amount if target == account else -amount
            balance += change
            entries.append(
                {
                    "position": position,
                    "at": at.isoformat(),
                    "event": event_type,
                    "event_id": event_id,
                    "counter_account": source if target == account else target,
                    "change": change,
                    "balance": balance,
                }
            )
    return {
        "unit": unit,
        "opening_balance": before,
        "entries": entries,
        "next_after": entries[-1]["position"] if len(entries) == limit else None,
    }


# --- Rules and stars -----------------------------------------------------------------------------


class RuleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effective_from: date = Field(description="The first day of service it prices; today or later.")
    points_per_hour: Decimal = Field(ge=0, le=1000, max_digits=7, decimal_places=2)
    overrides: list[RateOverride] = Field(default_factory=list, max_length=200)
    campaigns: list[Campaign] = Field(default_factory=list, max_length=50)
    daily_cap: Points | None = None
    expiry: Expiry = Field(default_factory=Expiry)


@router.post(
    "/districts/{district_code}/points-rules",
    **allow(*DISTRICT_STAFF),
    status_code=201,
    tags=["rules"],
    responses=problems(404, 409),
)
async def set_rule(
    district_code: DistrictInReach, body: RuleInput, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """A new version of the district's rule, for service from `effective_from` on. For the
    district's admins and the city's."""
    rule = await handlers.set_rule(
        events_of(request), body.model_dump() | {"district_code": district_code}, actor, now_of(request)
    )
    return rule.model_dump(mode="json")


@router.get(
    "/districts/{district_code}/points-rules", **allow(*DISTRICT_STAFF), tags=["rules"], responses=problems(404)
)
async def list_rules(district_code: DistrictInReach, request: Request) -> dict[str, Any]:
    """Every version of the district's rule, oldest first. For the district's admins and the city's."""
    async with reading(events_of(request).engine) as conn:
        rows = await conn.execute(
            select(store.points_rules.c.rule)
            .where(store.points_rules.c.district_code == district_code)
            .order_by(store.points_rules.c.version)
        )
        return {"district_code": district_code, "versions": [rule for (rule,) in rows]}


class ThresholdsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: list[Hours] = Field(min_length=5, max_length=5, description="Hours for one to five stars, rising.")


@router.put("/star-thresholds", **allow(Role.city_admin), tags=["stars"], responses=problems(409))
async def set_thresholds(body: ThresholdsInput, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """The city's thresholds; every volunteer's level follows at once."""
    try:
        StarThresholdsSet(hours=body.hours)
    except ValidationError as error:
        raise Invalid(error.errors()[0]["msg"], field="hours") from None
    thresholds = await handlers.set_star_thresholds(events_of(request), body.hours, actor)
    return {"hours": [str(h) for h in thresholds.hours]}


@router.get("/star-thresholds", **allow(*STAFF, Role.team_leader, Role.volunteer, Role.partner), tags=["stars"])
async def get_thresholds(request: Request) -> dict[str, Any]:
    async with reading(events_of(request).engine) as conn:
        hours = await conn.scalar(select(store.star_thresholds.c.hours))
    return {"hours": [str(h) for h in (hours or DEFAULT_STAR_THRESHOLDS)]}


@router.get(
    "/volunteers/{volunteer_number}/stars/at-least/{level}",
    **allow(*STAFF, Role.volunteer, Role.partner),
    tags=["partners"],
    responses=problems(404),
)
async def at_least(
    volunteer_number: VolunteerPath,
    level: Annotated[int, Path(ge=1, le=5)],
    row: Annotated[Row, Depends(account_for_star_check)],
) -> dict[str, bool]:
    """For partners: is the volunteer at `level` stars or above? Yes or no, nothing else. A
    partner asks about any volunteer of the city; a volunteer about themselves; staff about
    those of their part of it."""
    return {"answer": row["star_level"] >= level}


# --- Shop -----------------------------------------------------------------------------------------

ItemName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class ItemInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ItemName
    price_points: int = Field(ge=1, le=10**6)
    stock: int = Field(ge=0, le=10**6)


class ItemChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add_stock: int = Field(default=0, ge=0, le=10**6)
    price_points: int | None = Field(default=None, ge=1, le=10**6)


def _item(item: Item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "site_id": item.site_id,
        "name": item.name,
        "price_points": item.price_points,
        "stock": item.stock,
        "withdrawn": item.withdrawn,
    }


@router.post("/sites/{site_id}/items", **allow(*STAFF), status_code=201, tags=["shop"], responses=problems(404, 409))
async def list_item(
    site_id: SiteId, site: SiteInReach, body: ItemInput, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Offer an item at the site's shop. For staff over the site."""
    item = await handlers.list_item(events_of(request), site_id, body.name, body.price_points, body.stock, actor)
    return _item(item)


@router.get(
    "/sites/{site_id}/items", **allow(*STAFF, Role.team_leader, Role.volunteer), tags=["shop"], responses=problems(404)
)
async def site_items(site_id: SiteId, site: Annotated[Row, Depends(shop_in_reach)], request: Request) -> dict[str, Any]:
    """The site's items. Any volunteer or team leader of the city may look (they redeem at any
    shop); staff over the site."""
    async with reading(events_of(request).engine) as conn:
        rows = await conn.execute(
            select(store.shop_items).where(store.shop_items.c.site_id == site_id).order_by(store.shop_items.c.item_id)
        )
        return {"site_id": site_id, "items": [_item(handlers.item_of(dict(r))) for r in rows.mappings()]}


@router.patch("/items/{item_id}", **allow(*STAFF), tags=["shop"], responses=problems(404, 409))
async def change_item(
    item_id: ItemId, item: ItemInReach, body: ItemChange, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Restock or reprice an item. For staff over its site."""
    item = await handlers.change_item(events_of(request), item_id, actor, add=body.add_stock, price=body.price_points)
    return _item(item)


@router.post("/items/{item_id}/withdraw", **allow(*STAFF), tags=["shop"], responses=problems(404, 409))
async def withdraw_item(item_id: ItemId, item: ItemInReach, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Offer the item no more. For staff over its site."""
    return _item(await handlers.change_item(events_of(request), item_id, actor, withdraw=True))


class RedemptionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volunteer_number: VolunteerNumber
    item_id: ItemId
    quantity: int = Field(default=1, ge=1, le=100)


class Cancelling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


def _redemption(r: Redemption) -> dict[str, Any]:
    return {
        "redemption_id": r.redemption_id,
        "volunteer_number": r.volunteer_number,
        "item_id": r.item_id,
        "site_id": r.site_id,
        "quantity": r.quantity,
        "points": r.points,
        "state": r.state,
        "reserved_at": r.reserved_at.isoformat(),
        "settled_at": r.settled_at.isoformat() if r.settled_at else None,
    }


@router.post(
    "/redemptions", **allow(*STAFF, Role.volunteer), status_code=201, tags=["shop"], responses=problems(404, 409)
)
async def redeem(body: RedemptionInput, request: Request, response: Response, actor: CurrentActor) -> dict[str, Any]:
    """Reserve the stock and take the points at once; not enough of either is a 409. A volunteer
    redeems for themselves at any shop of the city; staff for a volunteer of their part of it at
    a shop of their part of it. Anyone else is told there is no such account or item."""
    async with reading(events_of(request).engine) as conn:
        await reached_account(conn, body.volunteer_number, actor)
        await reached_item(conn, body.item_id, actor)
    redemption = await handlers.redeem(
        events_of(request), body.volunteer_number, body.item_id, body.quantity, actor, now_of(request)
    )
    response.headers["Location"] = f"/redemptions/{redemption.redemption_id}"
    return _redemption(redemption)


@router.get("/redemptions/{redemption_id}", **allow(*STAFF, Role.volunteer), tags=["shop"], responses=problems(404))
async def get_redemption(redemption_id: RedemptionId, row: RedemptionInReach) -> dict[str, Any]:
    """A redemption, for the volunteer who redeemed and staff over the site."""
    return _redemption(handlers.redemption_of(row))


@router.post("/redemptions/{redemption_id}/hand-over", **allow(*STAFF), tags=["shop"], responses=problems(404, 409))
async def hand_over(
    redemption_id: RedemptionId, row: RedemptionInReach, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """The site handed the goods over. For staff over the site."""
    return _redemption(await handlers.settle(events_of(request), redemption_id, actor, now_of(request)))


@router.post(
    "/redemptions/{redemption_id}/cancel", **allow(*STAFF, Role.volunteer), tags=["shop"], responses=problems(404, 409)
)
async def cancel(
    redemption_id: RedemptionId, row: RedemptionInReach, body: Cancelling, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Cancel a reserved redemption: the stock and the points return. For the volunteer who
    redeemed and staff over the site."""
    redemption = await handlers.settle(
        events_of(request), redemption_id, actor, now_of(request), cancel_reason=body.reason
    )
    return _redemption(redemption)


@router.get("/sites/{site_id}/redemptions", **allow(*STAFF), tags=["shop"], responses=problems(404))
async def site_redemptions(
    site_id: SiteId,
    site: SiteInReach,
    request: Request,
    state: Annotated[str | None, Query(pattern="^(reserved|handed_over|cancelled)$")] = None,
    after: Annotated[str | None, Query(pattern=r"^RD\d{8,12}$")] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The site's redemptions, oldest first, a page at a time. For staff over the site."""
    r = store.redemptions.c
    query = select(store.redemptions).where(r.site_id == site_id)
    if state:
        query = query.where(r.state == state)
    if after:
        query = query.where(r.redemption_id > after)
    async with reading(events_of(request).engine) as conn:
        rows = (await conn.execute(query.order_by(r.redemption_id).limit(limit))).mappings().all()
    items = [_redemption(handlers.redemption_of(row)) for row in rows]
    return {
        "site_id": site_id,
        "redemptions": items,
        "next_after": items[-1]["redemption_id"] if len(items) == limit else None,
    }


# --- Figures and the ledger's own checks ----------------------------------------------------------


@router.get("/districts/{district_code}/points", **allow(*DISTRICT_STAFF), tags=["figures"], responses=problems(404))
async def district_points(district_code: DistrictInReach, request: Request) -> dict[str, Any]:
    """Issued: points credited for service in the district, net of debits. Redeemed: points paid
    at its sites' shops (held: reserved, not yet handed over). Expired: its volunteers' expired
    points. Outstanding: what its volunteers hold now (net of debts). For the district's admins
    and the city's."""
    async with reading(events_of(request).engine) as conn:
        balances = {
            account: balance
            for account, balance in await conn.execute(
                select(store.ledger_accounts.c.account, store.ledger_accounts.c.balance).where(
                    store.ledger_accounts.c.unit == POINTS,
                    store.ledger_accounts.c.account.in_([f"issuance:{district_code}", f"expiry:{district_code}"]),
                )
            )
        }
        sites = select(store.known_sites.c.site_id).where(store.known_sites.c.district_code == district_code)
        redeemed = await conn.scalar(
            select(func.coalesce(func.sum(store.redemptions.c.points), 0)).where(
                store.redemptions.c.site_id.in_(sites), store.redemptions.c.state == handlers.HANDED_OVER
            )
        )
        held = await conn.scalar(
            select(func.coalesce(func.sum(store.redemptions.c.points), 0)).where(
                store.redemptions.c.site_id.in_(sites), store.redemptions.c.state == handlers.RESERVED
            )
        )
        outstanding = await conn.scalar(
            select(func.coalesce(func.sum(store.accounts.c.balance), 0)).where(
                store.accounts.c.district_code == district_code
            )
        )
    return {
        "district_code": district_code,
        "issued": -balances.get(f"issuance:{district_code}", 0),
        "redeemed": int(redeemed),  # PostgreSQL sums a bigint to a numeric
        "held_for_redemptions": int(held),
        "expired": balances.get(f"expiry:{district_code}", 0),
        "outstanding": int(outstanding),
    }


@router.get("/ledger/trial-balance", **allow(Role.city_admin), tags=["ledger"])
async def trial_balance(request: Request) -> dict[str, Any]:
    """Every account's balance summed per unit: zero when the books balance. The books are the
    city's, one set: for the city admin (a district's figures are GET /districts/{code}/points)."""
    async with reading(events_of(request).engine) as conn:
        rows = await conn.execute(
            select(store.ledger_accounts.c.unit, func.sum(store.ledger_accounts.c.balance)).group_by(
                store.ledger_accounts.c.unit
            )
        )
        totals = {unit: int(total) for unit, total in rows}
        points = await conn.scalar(select(func.coalesce(func.sum(store.accounts.c.balance), 0)))
        minutes = await conn.scalar(
            select(func.coalesce(func.sum(store.accounts.c.time_minutes - store.accounts.c.time_debt), 0))
        )
    sums = {POINTS: totals.get(POINTS, 0) + int(points), MINUTES: totals.get(MINUTES, 0) + int(minutes)}
    return {"balanced": all(v == 0 for v in sums.values()), "sums": sums}


@router.get("/ledger/waiting", **allow(Role.city_admin), tags=["ledger"])
async def waiting(request: Request, limit: Limit = 100) -> dict[str, Any]:
    """Service events that wait to be applied (an account not open yet, a confirmation not come):
    the city's ledger's own check, for the city admin."""
    w = store.waiting.c
    async with reading(events_of(request).engine) as conn:
        rows = await conn.execute(
            select(w.event_id, w.volunteer_number, w.record_id, w.reason, w.since).order_by(w.position).limit(limit)
        )
        return {"waiting": [dict(r._mapping) | {"since": r.since.isoformat()} for r in rows]}
