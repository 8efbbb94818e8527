"""Points' commands: rules and star thresholds, the shop and its redemptions, expiry.

Each loads what it needs in one transaction, lets the pure modules decide, and records the
events with the state they fold to; a concurrent change makes it decide again (`retrying`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from services.points import ledger, rules, store
from services.points.books import Books
from shared.auth import Actor
from shared.citytime import city_date
from shared.db import reading
from shared.errors import Conflict, Invalid, NotFound
from shared.events.points import (
    CITY_ORG_PATH,
    LotShare,
    PointsRuleSet,
    RedemptionCancelled,
    RedemptionHandedOver,
    RedemptionReserved,
    ShopItemListed,
    ShopItemRepriced,
    ShopItemRestocked,
    ShopItemWithdrawn,
    StarThresholdsSet,
)
from shared.eventstore import EventStore, Transaction, retrying

# --- Rules -------------------------------------------------------------------------------------


async def set_rule(event_store: EventStore, fields: dict[str, Any], actor: Actor, now: datetime) -> PointsRuleSet:
    district = fields["district_code"]
    if fields["effective_from"] < city_date(now):
        raise Invalid("a rule takes effect today or later: credited points keep the rule they had", field="effective_from")

    async def attempt() -> PointsRuleSet:
        async with event_store.transaction() as tx:
            version = 1 + (
                await tx.conn.scalar(
                    select(store.points_rules.c.version)
                    .where(store.points_rules.c.district_code == district)
                    .order_by(store.points_rules.c.version.desc())
                    .limit(1)
                )
                or 0
            )
            rule = PointsRuleSet(**fields, version=version)
            rules.check_rule(rule)
            await tx.record(district, version - 1, [rule], org_path=(district,), actor=actor.id)
            await tx.conn.execute(
                store.points_rules.insert().values(district_code=district, version=version, rule=rule.model_dump(mode="json"))
            )
            return rule

    return await retrying(attempt)


async def set_star_thresholds(
    event_store: EventStore, hours: list[Decimal], actor: Actor
) -> StarThresholdsSet:
    """New thresholds, and every account re-evaluated against them in the same transaction."""
    thresholds = StarThresholdsSet(hours=hours)

    async def attempt() -> StarThresholdsSet:
        async with event_store.transaction() as tx:
            version = await tx.conn.scalar(select(store.star_thresholds.c.version)) or 0
            envelope, = await tx.record("city", version, [thresholds], org_path=CITY_ORG_PATH, actor=actor.id)
            if version:
                await tx.conn.execute(
                    update(store.star_thresholds).values(version=version + 1, hours=[str(h) for h in hours])
                )
            else:
                await tx.conn.execute(
                    store.star_thresholds.insert().values(city="city", version=1, hours=[str(h) for h in hours])
                )
            levels = tuple(thresholds.hours)
            numbers = (await tx.conn.execute(select(store.accounts.c.volunteer_number))).scalars().all()
            for start in range(0, len(numbers), 500):
                books = Books(tx)
                await books.load(numbers[start : start + 500])
                for number, account in books.accounts.items():
                    books.record(number, ledger.restar(account, levels), account=number, cause=envelope)
                await books.flush()
            return thresholds

    return await retrying(attempt)


# --- Shop ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    item_id: str
    site_id: str
    name: str
    price_points: int
    stock: int
    withdrawn: bool


async def _site_path(tx: Transaction, site_id: str) -> tuple[str, ...]:
    row = (await tx.conn.execute(select(store.known_sites).where(store.known_sites.c.site_id == site_id))).mappings().first()
    if row is None:
        raise NotFound(f"unknown site {site_id}", field="site_id")
    if not row["open"]:
        raise Conflict(f"site {site_id} is closed", state="closed")
    return tuple(row["org_path"].split("/"))


async def _item(tx: Transaction, item_id: str) -> dict[str, Any]:
    query = select(store.shop_items).where(store.shop_items.c.item_id == item_id).with_for_update()
    row = (await tx.conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"unknown item {item_id}", field="item_id")
    return dict(row)


def item_of(row: dict[str, Any]) -> Item:
    return Item(row["item_id"], row["site_id"], row["name"], row["price_points"], row["stock"], bool(row["withdrawn"]))


async def list_item(event_store: EventStore, site_id: str, name: str, price: int, stock: int, actor: Actor) -> Item:
    async with event_store.transaction() as tx:
        org_path = await _site_path(tx, site_id)
        item_id = await store.counters.next(tx.conn, "I")
        await tx.record(
            item_id,
            0,
            [ShopItemListed(item_id=item_id, site_id=site_id, name=name, price_points=price, stock=stock)],
            org_path=org_path,
            actor=actor.id,
        )
        row = {"item_id": item_id, "site_id": site_id, "name": name, "price_points": price, "stock": stock, "withdrawn": 0, "version": 1}
        await tx.conn.execute(store.shop_items.insert().values(**row))
        return item_of(row)


async def change_item(
    event_store: EventStore, item_id: str, actor: Actor, *, add: int = 0, price: int | None = None, withdraw: bool = False
) -> Item:
    async def attempt() -> Item:
        async with event_store.transaction() as tx:
            row = await _item(tx, item_id)
            if row["withdrawn"]:
                raise Conflict(f"item {item_id} is withdrawn", state="withdrawn")
            org_path = await _site_path(tx, row["site_id"])
            events: list[Any] = []
            if add:
                row["stock"] += add
                events.append(ShopItemRestocked(item_id=item_id, added=add, stock=row["stock"]))
            if price is not None and price != row["price_points"]:
                row["price_points"] = price
                events.append(ShopItemRepriced(item_id=item_id, price_points=price))
            if withdraw:
                row["withdrawn"] = 1
                events.append(ShopItemWithdrawn(item_id=item_id))
            await tx.record(item_id, row["version"], events, org_path=org_path, actor=actor.id)
            row["version"] += len(events)
            await tx.conn.execute(update(store.shop_items).where(store.shop_items.c.item_id == item_id).values(**row))
            return item_of(row)

    return await retrying(attempt)


@dataclass(frozen=True)
class Redemption:
    redemption_id: str
    volunteer_number: str
    item_id: str
    site_id: str
    quantity: int
    points: int
    state: str
    reserved_at: datetime
    settled_at: datetime | None


def redemption_of(row: Any) -> Redemption:
    return Redemption(
        row["redemption_id"], row["volunteer_number"], row["item_id"], row["site_id"], row["quantity"],
        row["points"], row["state"], row["reserved_at"], row["settled_at"],
    )  # fmt: skip


RESERVED, HANDED_OVER, CANCELLED = "reserved", "handed_over", "cancelled"


async def redeem(event_store: EventStore, volunteer_number: str, item_id: str, quantity: int, actor: Actor, now: datetime) -> Redemption:
    """Reserve the stock and take the points in one transaction, or refuse (409) and change nothing."""

    async def attempt() -> Redemption:
        async with event_store.transaction() as tx:
            item = await _item(tx, item_id)
            if item["withdrawn"]:
                raise Conflict(f"item {item_id} is no longer offered", state="withdrawn")
            if item["stock"] < quantity:
                raise Conflict(f"item {item_id} has {item['stock']} in stock, {quantity} asked for", stock=item["stock"])
            org_path = await _site_path(tx, item["site_id"])
            books = Books(tx)
            account = await books.account(volunteer_number)
            points = item["price_points"] * quantity
            shares, _ = account.take(points, into_debt=False)
            redemption_id = await store.counters.next(tx.conn, "RD")
            reserved = RedemptionReserved(
                redemption_id=redemption_id, volunteer_number=volunteer_number, item_id=item_id, site_id=item["site_id"],
                quantity=quantity, points=points, taken_from=shares, at=now,
            )  # fmt: skip
            books.touch(volunteer_number)
            books.record(redemption_id, [reserved], account=None, org_path=org_path, version=0, actor=actor.id)
            await books.flush()
            await tx.conn.execute(
                update(store.shop_items)
                .where(store.shop_items.c.item_id == item_id)
                .values(stock=item["stock"] - quantity)
            )
            row = {
                "redemption_id": redemption_id, "volunteer_number": volunteer_number, "item_id": item_id,
                "site_id": item["site_id"], "quantity": quantity, "points": points,
                "taken_from": [s.model_dump(mode="json") for s in shares], "state": RESERVED,
                "reserved_at": now, "settled_at": None,
            }  # fmt: skip
            await tx.conn.execute(store.redemptions.insert().values(**row))
            return redemption_of(row)

    return await retrying(attempt)


async def _redemption(tx: Transaction, redemption_id: str) -> dict[str, Any]:
    query = select(store.redemptions).where(store.redemptions.c.redemption_id == redemption_id).with_for_update()
    row = (await tx.conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"unknown redemption {redemption_id}")
    return dict(row)


async def settle(
    event_store: EventStore, redemption_id: str, actor: Actor, now: datetime, *, cancel_reason: str | None = None
) -> Redemption:
    """Hand the goods over, or cancel (stock and points return). Doing it again changes nothing;
    doing the other after either is a 409 naming the state."""
    wanted = CANCELLED if cancel_reason else HANDED_OVER

    async def attempt() -> Redemption:
        async with event_store.transaction() as tx:
            row = await _redemption(tx, redemption_id)
            if row["state"] == wanted:
                return redemption_of(row)
            if row["state"] != RESERVED:
                raise Conflict(f"redemption {redemption_id} is {row['state']}", state=row["state"])
            history = await tx.load("redemption", redemption_id)
            version, org_path = len(history), history[0].org_path
            books = Books(tx)
            account = await books.account(row["volunteer_number"])
            if cancel_reason:
                shares = [LotShare.model_validate(s) for s in row["taken_from"]]
                account.give_back(shares)
                books.touch(row["volunteer_number"])
                event: Any = RedemptionCancelled(
                    redemption_id=redemption_id, volunteer_number=row["volunteer_number"], item_id=row["item_id"],
                    site_id=row["site_id"], quantity=row["quantity"], points=row["points"], returned=shares,
                    reason=cancel_reason, at=now,
                )  # fmt: skip
                await tx.conn.execute(
                    update(store.shop_items)
                    .where(store.shop_items.c.item_id == row["item_id"])
                    .values(stock=store.shop_items.c.stock + row["quantity"])
                )
            else:
                event = RedemptionHandedOver(
                    redemption_id=redemption_id, volunteer_number=row["volunteer_number"], site_id=row["site_id"],
                    points=row["points"], at=now,
                )  # fmt: skip
            books.record(redemption_id, [event], account=None, org_path=org_path, version=version, actor=actor.id)
            await books.flush()
            row |= {"state": wanted, "settled_at": now}
            await tx.conn.execute(
                update(store.redemptions)
                .where(store.redemptions.c.redemption_id == redemption_id)
                .values(state=wanted, settled_at=now)
            )
            return redemption_of(row)

    return await retrying(attempt)


# --- Expiry -------------------------------------------------------------------------------------


async def expire_due(event_store: EventStore, now: datetime, batch: int = 500) -> list[str]:
    """Expire every lot whose date has passed (a daily job; running it twice expires nothing twice)."""
    today = city_date(now)
    done: list[str] = []
    while True:
        async with reading(event_store.engine) as conn:
            numbers = (
                await conn.execute(
                    select(store.point_lots.c.volunteer_number)
                    .where(store.point_lots.c.expires_on < today)
                    .distinct()
                    .limit(batch)
                )
            ).scalars().all()
        if not numbers:
            return done
        async with event_store.transaction() as tx:
            books = Books(tx)
            await books.load(numbers)
            for number, account in books.accounts.items():
                expired = ledger.expire(account, today)
                books.record(number, expired, account=number)
                done.extend(f"{number}: {e.points} points of {e.expires_on}" for e in expired)
            await books.flush()
