"""The event store on SQLite and PostgreSQL: appends, versions, outbox rows, inbox claims."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from shared.catalog import catalog
from shared.eventstore import ConcurrencyConflict, EventStore
from tests.factories import PATH, registered


async def count(store: EventStore, table) -> int:
    async with store.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(table))


async def test_appended_events_load_in_version_order_with_one_outbox_row_each(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.record("V00000001", 0, [registered(1)], org_path=PATH, actor="staff-1")
    async with store.transaction() as tx:
        await tx.record("V00000001", 1, [registered(1), registered(1)], org_path=PATH, actor="staff-1")

    history = await store.load("volunteer", "V00000001")
    assert [e.aggregate_version for e in history] == [1, 2, 3]
    assert history[0].actor == "staff-1" and history[0].org_path == PATH
    assert await count(store, store.schema.outbox) == 3
    async with store.engine.connect() as conn:
        subjects = set((await conn.execute(select(store.schema.outbox.c.subject))).scalars())
    assert subjects == {"registry.370303.volunteer.registered"}


async def test_append_at_a_stale_version_is_a_conflict_and_writes_nothing(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.record("V00000001", 0, [registered(1)], org_path=PATH, actor="a")

    with pytest.raises(ConcurrencyConflict) as conflict:
        async with store.transaction() as tx:
            await tx.record("V00000002", 0, [registered(2)], org_path=PATH, actor="a")
            await tx.record("V00000001", 0, [registered(1)], org_path=PATH, actor="a")
    assert conflict.value.expected == 0
    # The whole transaction is gone, including the other aggregate's event and outbox rows.
    assert await count(store, store.schema.events) == 1
    assert await count(store, store.schema.outbox) == 1


async def test_an_append_behind_the_current_version_names_both_versions(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.record("V00000001", 0, [registered(1), registered(1)], org_path=PATH, actor="a")
    with pytest.raises(ConcurrencyConflict, match="is at version 2, expected version 1") as conflict:
        async with store.transaction() as tx:
            await tx.record("V00000001", 1, [registered(1)], org_path=PATH, actor="a")
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    assert await count(store, store.schema.events) == 2


async def test_concurrent_appends_at_the_same_version_let_exactly_one_win(store: EventStore) -> None:
    start = asyncio.Event()

    async def append(n: int) -> str:
        await start.wait()
        try:
            async with store.transaction() as tx:
                await tx.record("V00000009", 0, [registered(n)], org_path=PATH, actor=f"writer-{n}")
                await asyncio.sleep(0.05)  # hold the transaction open while the other tries
            return "won"
        except ConcurrencyConflict:
            return "conflict"

    tasks = [asyncio.create_task(append(n)) for n in range(4)]
    start.set()
    outcomes = await asyncio.gather(*tasks)
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "won"]
    assert await count(store, store.schema.events) == 1
    assert await count(store, store.schema.outbox) == 1


async def test_an_exception_inside_the_transaction_leaves_no_event_and_no_outbox_row(store: EventStore) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.record("V00000001", 0, [registered(1)], org_path=PATH, actor="a")
            raise RuntimeError("the view update failed")
    assert await count(store, store.schema.events) == 0
    assert await count(store, store.schema.outbox) == 0


async def test_an_inbox_claim_succeeds_once_per_consumer_and_event(store: EventStore) -> None:
    from tests.factories import registered_envelope

    event_id = registered_envelope(1).event_id
    async with store.transaction() as tx:
        assert await tx.claim("points", event_id) is True
        assert await tx.claim("points", event_id) is False
        assert await tx.claim("dispatch", event_id) is True
    async with store.transaction() as tx:
        assert await tx.claim("points", event_id) is False


async def test_a_claim_rolled_back_with_its_transaction_can_be_claimed_again(store: EventStore) -> None:
    from tests.factories import registered_envelope

    event_id = registered_envelope(1).event_id
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await tx.claim("points", event_id)
            raise RuntimeError("state change failed")
    async with store.transaction() as tx:
        assert await tx.claim("points", event_id) is True


async def test_commit_wakes_listeners_only_when_events_were_appended(store: EventStore) -> None:
    woken = []
    store.on_commit(lambda: woken.append(1))
    async with store.transaction() as tx:
        await tx.claim("points", registered_envelope_id())
    assert woken == []
    async with store.transaction() as tx:
        await tx.record("V00000001", 0, [registered(1)], org_path=PATH, actor="a")
    assert woken == [1]


def registered_envelope_id():
    from tests.factories import registered_envelope

    return registered_envelope(1).event_id


async def test_a_one_trip_transaction_commits_its_held_back_writes_together(store: EventStore) -> None:
    async with store.transaction(one_trip=True) as tx:
        await tx.record("V00000001", 0, [registered(1), registered(1)], org_path=PATH, actor="a")
        await tx.record("V00000002", 0, [registered(2)], org_path=PATH, actor="a")
    assert [e.aggregate_version for e in await store.load("volunteer", "V00000001")] == [1, 2]
    assert await count(store, store.schema.outbox) == 3


async def test_a_one_trip_append_at_a_taken_version_is_a_conflict_and_writes_nothing(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.record("V00000001", 0, [registered(1)], org_path=PATH, actor="a")
    with pytest.raises(ConcurrencyConflict) as conflict:
        async with store.transaction(one_trip=True) as tx:
            await tx.record("V00000002", 0, [registered(2)], org_path=PATH, actor="a")
            # Appended as if version 1 were still free (a concurrent writer took it meanwhile).
            await tx.append(
                [catalog.envelope(registered(1), aggregate_id="V00000001", aggregate_version=1, org_path=PATH, actor="a")], 0
            )
    assert (conflict.value.aggregate_id, conflict.value.expected) == ("V00000001", 0)
    assert await count(store, store.schema.events) == 1
    assert await count(store, store.schema.outbox) == 1
