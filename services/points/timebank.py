"""The time bank (时间银行): confirmed hours are deposited as time credits (posting.py); here a
volunteer links family members, gives them credits within the city's yearly limit, and sets
credits aside to pay for an order for themselves or a family member. Dispatch takes an order
that names the reservation; the order served spends the credits, cancelled returns them.
Credits are city-wide: an order in any district may use them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from services.points import store
from services.points.books import Books
from shared.auth import Actor
from shared.catalog import Event
from shared.citytime import city_date
from shared.db import upsert
from shared.envelope import EventEnvelope
from shared.errors import Conflict, Invalid, NotFound
from shared.events.dispatch import OrderCancelled, OrderCompleted, OrderPlaced
from shared.events.points import (
    CITY_ORG_PATH,
    FamilyMemberLinked,
    FamilyMemberUnlinked,
    Relation,
    ReleaseReason,
    TimeCreditsReleased,
    TimeCreditsReserved,
    TimeCreditsSpent,
    TimeCreditsTransferred,
    TimeTransferLimitSet,
)
from shared.eventstore import EventStore, Transaction, retrying

DEFAULT_TRANSFER_MINUTES_PER_YEAR = 20 * 60
RESERVATION_VALID = timedelta(hours=24)  # time to place the order at dispatch
# Dispatch takes a reservation until it expires; its OrderPlaced may reach points a little later.
RELEASE_GRACE = timedelta(hours=1)
HELD, SPENT, RELEASED = "held", "spent", "released"
ORDER_EVENTS = (OrderPlaced, OrderCompleted, OrderCancelled)


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    volunteer_number: str
    beneficiary_number: str
    minutes: int
    state: str
    order_id: str | None
    expires_at: datetime


def reservation_of(row: Any) -> Reservation:
    return Reservation(
        row["reservation_id"], row["volunteer_number"], row["beneficiary_number"], row["minutes"], row["state"],
        row["order_id"], row["expires_at"],
    )  # fmt: skip


async def transfer_limit(conn: Any) -> int:
    value = await conn.scalar(select(store.time_bank_limit.c.minutes_per_year))
    return DEFAULT_TRANSFER_MINUTES_PER_YEAR if value is None else value


async def set_transfer_limit(event_store: EventStore, minutes: int, actor: Actor) -> int:
    async def attempt() -> int:
        async with event_store.transaction() as tx:
            version = await tx.conn.scalar(select(store.time_bank_limit.c.version)) or 0
            await tx.record("city", version, [TimeTransferLimitSet(minutes_per_year=minutes)], org_path=CITY_ORG_PATH, actor=actor.id)
            statement = upsert(tx.conn, store.time_bank_limit).values(city="city", version=version + 1, minutes_per_year=minutes)
            await tx.conn.execute(
                statement.on_conflict_do_update(index_elements=["city"], set_={"version": version + 1, "minutes_per_year": minutes})
            )
            return minutes

    return await retrying(attempt)


async def _linked(tx: Transaction, number: str, member: str) -> str | None:
    c = store.family_links.c
    return await tx.conn.scalar(select(c.relation).where(c.volunteer_number == number, c.member_number == member))


async def link(event_store: EventStore, number: str, member: str, relation: Relation, actor: Actor) -> None:
    if member == number:
        raise Invalid("a volunteer is not their own family member", field="member_number")

    async def attempt() -> None:
        async with event_store.transaction() as tx:
            books = Books(tx)
            await books.account(number)
            await books.account(member)
            if await _linked(tx, number, member) == relation:
                return
            books.record(number, [FamilyMemberLinked(volunteer_number=number, member_number=member, relation=relation)], account=number, actor=actor.id)
            await books.flush()
            statement = upsert(tx.conn, store.family_links).values(volunteer_number=number, member_number=member, relation=relation)
            await tx.conn.execute(
                statement.on_conflict_do_update(index_elements=["volunteer_number", "member_number"], set_={"relation": relation})
            )

    await retrying(attempt)


async def unlink(event_store: EventStore, number: str, member: str, actor: Actor) -> None:
    async def attempt() -> None:
        async with event_store.transaction() as tx:
            if await _linked(tx, number, member) is None:
                raise NotFound(f"{member} is not linked to {number} as family", field="member_number")
            books = Books(tx)
            await books.account(number)
            books.record(number, [FamilyMemberUnlinked(volunteer_number=number, member_number=member)], account=number, actor=actor.id)
            await books.flush()
            c = store.family_links.c
            await tx.conn.execute(delete(store.family_links).where(c.volunteer_number == number, c.member_number == member))

    await retrying(attempt)


async def give(event_store: EventStore, number: str, member: str, minutes: int, actor: Actor, now: datetime) -> TimeCreditsTransferred:
    """Give time credits to a linked family member, within the year's limit and the balance."""

    async def attempt() -> TimeCreditsTransferred:
        async with event_store.transaction() as tx:
            if await _linked(tx, number, member) is None:
                raise Conflict(f"{member} is not linked to {number} as family: link them first", field="member_number")
            year = city_date(now).year
            g = store.time_gifts.c
            given = await tx.conn.scalar(select(g.minutes).where(g.volunteer_number == number, g.year == year)) or 0
            limit = await transfer_limit(tx.conn)
            if given + minutes > limit:
                raise Conflict(
                    f"{number} may give {max(limit - given, 0)} more minutes to family in {year} (limit {limit})",
                    field="minutes", given_this_year=given, limit=limit,
                )  # fmt: skip
            books = Books(tx)
            await books.load([number, member])  # both at once, in one order: two gifts between them never deadlock
            giver = await books.account(number)
            receiver = await books.account(member)
            giver.take_time(minutes, into_debt=False)
            receiver.credit_time(minutes)
            books.touch(member)
            event = TimeCreditsTransferred(volunteer_number=number, member_number=member, minutes=minutes, year=year, given_this_year=given + minutes)
            books.record(number, [event], account=number, actor=actor.id)
            await books.flush()
            statement = upsert(tx.conn, store.time_gifts).values(volunteer_number=number, year=year, minutes=given + minutes)
            await tx.conn.execute(
                statement.on_conflict_do_update(index_elements=["volunteer_number", "year"], set_={"minutes": given + minutes})
            )
            return event

    return await retrying(attempt)


async def reserve(
    event_store: EventStore, number: str, minutes: int, beneficiary: str | None, actor: Actor, now: datetime
) -> Reservation:
    """Set credits aside for an order for the volunteer or a linked family member."""
    beneficiary = beneficiary or number

    async def attempt() -> Reservation:
        async with event_store.transaction() as tx:
            if beneficiary != number and await _linked(tx, number, beneficiary) is None:
                raise Conflict(f"{beneficiary} is not linked to {number} as family", field="beneficiary_number")
            books = Books(tx)
            account = await books.account(number)
            account.take_time(minutes, into_debt=False)
            books.touch(number)
            reservation_id = await store.counters.next(tx.conn, "TR")
            event = TimeCreditsReserved(
                reservation_id=reservation_id, volunteer_number=number, beneficiary_number=beneficiary, minutes=minutes,
                expires_at=now + RESERVATION_VALID, at=now,
            )  # fmt: skip
            books.record(reservation_id, [event], account=None, org_path=books.org_paths[number], version=0, actor=actor.id)
            await books.flush()
            row = {
                "reservation_id": reservation_id, "volunteer_number": number, "beneficiary_number": beneficiary,
                "minutes": minutes, "state": HELD, "order_id": None, "expires_at": event.expires_at, "reserved_at": now,
            }  # fmt: skip
            await tx.conn.execute(store.reservations.insert().values(**row))
            return reservation_of(row)

    return await retrying(attempt)


async def _reservation(tx: Transaction, **where: str) -> dict[str, Any] | None:
    query = select(store.reservations)
    for name, value in where.items():
        query = query.where(store.reservations.c[name] == value)
    row = (await tx.conn.execute(query.with_for_update())).mappings().first()
    return dict(row) if row else None


async def _settle(
    tx: Transaction, row: dict[str, Any], event: Event, state: str, now: datetime, actor: str, cause: EventEnvelope | None = None
) -> None:
    books = Books(tx)
    account = await books.account(row["volunteer_number"])
    if isinstance(event, TimeCreditsReleased):
        account.credit_time(row["minutes"])
        books.touch(row["volunteer_number"])
    version = await tx.version_of("time_credit_reservation", row["reservation_id"])
    books.record(
        row["reservation_id"], [event], account=None, org_path=books.org_paths[row["volunteer_number"]], version=version,
        actor=actor, cause=cause,
    )  # fmt: skip
    await books.flush()
    await tx.conn.execute(
        update(store.reservations)
        .where(store.reservations.c.reservation_id == row["reservation_id"])
        .values(state=state, settled_at=now)
    )


async def withdraw(event_store: EventStore, reservation_id: str, actor: Actor, now: datetime) -> Reservation:
    """The volunteer no longer needs it: the credits return, unless an order already took it."""

    async def attempt() -> Reservation:
        async with event_store.transaction() as tx:
            row = await _reservation(tx, reservation_id=reservation_id)
            if row is None:
                raise NotFound(f"unknown reservation {reservation_id}")
            if row["state"] == RELEASED:
                return reservation_of(row)
            if row["state"] != HELD or row["order_id"]:
                raise Conflict(
                    f"reservation {reservation_id} pays for order {row['order_id']}: cancel the order instead",
                    state=row["state"] if row["state"] != HELD else "taken",
                )
            event = TimeCreditsReleased(
                reservation_id=reservation_id, volunteer_number=row["volunteer_number"], minutes=row["minutes"],
                reason=ReleaseReason.withdrawn, at=now,
            )  # fmt: skip
            await _settle(tx, row, event, RELEASED, now, actor.id)
            return reservation_of(row | {"state": RELEASED})

    return await retrying(attempt)


async def release_unused(event_store: EventStore, now: datetime) -> list[str]:
    """Return the credits of reservations no order took before they expired (a clock job)."""
    async with event_store.transaction() as tx:
        c = store.reservations.c
        rows = (
            await tx.conn.execute(
                select(store.reservations).where(c.state == HELD, c.order_id.is_(None), c.expires_at <= now - RELEASE_GRACE).limit(500)
            )
        ).mappings().all()
        for row in rows:
            event = TimeCreditsReleased(
                reservation_id=row["reservation_id"], volunteer_number=row["volunteer_number"], minutes=row["minutes"],
                reason=ReleaseReason.unused, at=now,
            )  # fmt: skip
            await _settle(tx, dict(row), event, RELEASED, now, "system:points")
        return [f"{row['reservation_id']} released unused" for row in rows]


async def follow_orders(tx: Transaction, items: Sequence[tuple[EventEnvelope, Event]]) -> None:
    """Dispatch's orders that a reservation pays for: placed takes it, completed spends it,
    cancelled returns the credits. Applied once each (the reservation's state says where it is)."""
    for envelope, event in items:
        if isinstance(event, OrderPlaced):
            if event.time_credit_reservation:
                await tx.conn.execute(
                    update(store.reservations)
                    .where(store.reservations.c.reservation_id == event.time_credit_reservation)
                    .values(order_id=event.order_id)
                )
            continue
        row = await _reservation(tx, order_id=event.order_id)
        if row is None or row["state"] != HELD:
            continue  # not paid with time credits, or settled already (a redelivery)
        at = event.at
        if isinstance(event, OrderCompleted):
            settled: Event = TimeCreditsSpent(
                reservation_id=row["reservation_id"], volunteer_number=row["volunteer_number"], order_id=event.order_id,
                minutes=row["minutes"], at=at,
            )  # fmt: skip
            state = SPENT
        else:
            settled = TimeCreditsReleased(
                reservation_id=row["reservation_id"], volunteer_number=row["volunteer_number"], minutes=row["minutes"],
                reason=ReleaseReason.order_cancelled, order_id=event.order_id, at=at,
            )  # fmt: skip
            state = RELEASED
        await _settle(tx, row, settled, state, at, "system:points", cause=envelope)
