"""Hours posted while registry's event opens the volunteer's account, on PostgreSQL under READ
COMMITTED: the ledger parking them for lack of the account and the opening that releases what is
parked serialise on the account's advisory lock, so neither misses the other's write and no hours
wait for good. Each case holds one transaction open while the other runs, as a race would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text

from services.points import store
from services.points.books import RuleCache
from services.points.posting import post_service
from services.points.subscribers import registry_reactor
from shared.catalog import catalog
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore
from tests.factories import registered
from tests.infra.points import SERVICE_PATH, DispatchRecords, points_store, read_books
from tests.infra.postgres import throwaway_database
from tests.infra.waiting import eventually

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
async def points(postgres_admin_url: str) -> AsyncIterator[EventStore]:
    async with throwaway_database(postgres_admin_url) as url:
        events = points_store(url)
        await events.create_tables()
        yield events
        await events.engine.dispose()


async def open_in(tx: Any, events: EventStore, rules: RuleCache, n: int) -> None:
    """Registry's VolunteerRegistered, through points' own reactor handler, in `tx`."""
    event = registered(n)
    envelope = catalog.envelope(
        event, aggregate_id=event.volunteer_number, aggregate_version=1, org_path=SERVICE_PATH, actor="staff"
    )
    await registry_reactor(events, rules).handlers[VolunteerRegistered.spec.name](tx, envelope, event)


async def opening(events: EventStore, rules: RuleCache, n: int) -> None:
    async with events.transaction() as tx:
        await open_in(tx, events, rules, n)


async def posting(events: EventStore, rules: RuleCache, item: Any) -> None:
    async with events.transaction() as tx:
        await post_service(tx, [item], rules)


@asynccontextmanager
async def held_open(events: EventStore) -> AsyncIterator[Any]:
    async with events.transaction() as tx:
        yield tx


async def done_or_waiting_on_a_lock(events: EventStore, task: asyncio.Task[None]) -> bool:
    """The other transaction finished, or it waits for the one held open (its advisory lock)."""
    if task.done():
        return True
    async with events.engine.connect() as conn:
        return bool(await conn.scalar(_WAITING_FOR_AN_ADVISORY_LOCK))


_WAITING_FOR_AN_ADVISORY_LOCK = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def settle(events: EventStore, other: Awaitable[None]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(other)
    assert await eventually(lambda: done_or_waiting_on_a_lock(events, task), bool, timeout=30)
    return task


async def nothing_waits_and_hours_credited(events: EventStore, number: str, points: int) -> None:
    async with events.engine.connect() as conn:
        waiting = (await conn.execute(select(store.waiting.c.event_id, store.waiting.c.reason))).all()
        balance = await conn.scalar(select(store.accounts.c.balance).where(store.accounts.c.volunteer_number == number))
    assert waiting == [], "hours stranded: parked for an account that is open"
    assert balance == points
    books = await read_books(events)
    assert books.balances[("issuance:370303", "points")] == -points


async def test_hours_parked_while_the_account_opens_are_released_by_the_opening(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = registered(1).volunteer_number
    async with held_open(points) as ledger_tx:
        await post_service(ledger_tx, [dispatch.confirm(number, Decimal(2), NOW)], rules)  # parks: no account
        # The opening runs while the parking is not committed: it must wait for it, not miss it.
        opened = await settle(points, opening(points, rules, 1))
    await opened
    await nothing_waits_and_hours_credited(points, number, 20)


async def test_hours_posted_while_the_account_opens_wait_for_it_and_are_credited(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = registered(2).volunteer_number
    async with held_open(points) as registry_tx:
        await open_in(registry_tx, points, rules, 2)  # opened, released nothing, not committed
        # The ledger reads no account yet: it must wait for the opening, not park behind its back.
        posted = await settle(points, posting(points, rules, dispatch.confirm(number, Decimal(3), NOW)))
    await posted
    await nothing_waits_and_hours_credited(points, number, 30)


async def test_many_openings_and_postings_at_once_strand_no_hours(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    volunteers = range(10, 50)
    items = [dispatch.confirm(registered(n).volunteer_number, Decimal(1), NOW) for n in volunteers]
    await asyncio.gather(
        *(opening(points, rules, n) for n in volunteers),
        *(posting(points, rules, item) for item in items),
    )
    async with points.engine.connect() as conn:
        waiting = await conn.scalar(select(func.count()).select_from(store.waiting))
    books = await read_books(points)
    assert waiting == 0
    assert {number: account.balance for number, account in books.accounts.items()} == {
        registered(n).volunteer_number: 10 for n in volunteers
    }
