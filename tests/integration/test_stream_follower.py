"""A stream follower over a real NATS JetStream and a real store (SQLite and PostgreSQL): each
event applied once and in stream order, resumed from its checkpoint, a failing batch retried
event by event, an event that keeps failing dead-lettered while the rest goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select

from shared.bus import StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.db import make_engine
from shared.eventstore import EventStore, EventStoreSchema
from shared.replay import StreamFollower
from tests.factories import registered_envelope
from tests.infra.waiting import eventually

metadata = MetaData()
schema = EventStoreSchema(metadata)
# Applying a number twice breaks its uniqueness; the position says in which order they came.
applied = Table(
    "applied",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=True),
    Column("number", Integer, nullable=False, unique=True),
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    events = EventStore(make_engine(database_url), schema)
    await events.create_tables()
    yield events
    await events.engine.dispose()


@pytest.fixture
async def registry_stream(js):
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    return js


async def publish(js, numbers: range) -> None:
    for n in numbers:
        envelope = registered_envelope(n)
        await js.publish("registry.370303.volunteer.registered", envelope.to_json(), headers={"Nats-Msg-Id": str(envelope.event_id)})


def recorder(failures: dict[int, int] | None = None):
    """Applies each registration as a row (a second time would break its uniqueness); fails
    for the numbers in `failures` as many times as given (-1: always)."""
    failures = failures if failures is not None else {}

    async def apply(tx, events) -> None:
        for _, event in events:
            n = int(event.volunteer_number[1:])
            if failures.get(n):
                failures[n] -= 1
                raise RuntimeError(f"cannot apply {n} yet")
            await tx.conn.execute(applied.insert().values(number=n))

    return apply


async def rows(store: EventStore) -> list[int]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(applied.c.number).order_by(applied.c.position))).scalars())


@asynccontextmanager
async def following(follower: StreamFollower, nc) -> AsyncIterator[None]:
    task = asyncio.ensure_future(follower.follow(nc, "registry"))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_are_applied_once_in_order_and_a_new_follower_resumes_from_the_checkpoint(nc, registry_stream, store) -> None:
    await publish(registry_stream, range(1, 11))
    async with following(StreamFollower("test", store, recorder(), batch_size=4), nc):
        await eventually(lambda: rows(store), lambda r: len(r) == 10)
    await publish(registry_stream, range(11, 16))
    follower = StreamFollower("test", store, recorder(), batch_size=4)
    async with following(follower, nc):
        await eventually(lambda: rows(store), lambda r: len(r) == 15)
        await asyncio.sleep(0.3)
    assert await rows(store) == list(range(1, 16))
    assert await follower.checkpoint("REGISTRY") == 15


async def test_a_batch_that_fails_is_retried_event_by_event_and_applied_once(nc, registry_stream, store) -> None:
    await publish(registry_stream, range(1, 9))
    follower = StreamFollower("test", store, recorder({5: 2}), batch_size=100)
    async with following(follower, nc):
        await eventually(lambda: rows(store), lambda r: len(r) == 8)
    assert sorted(await rows(store)) == list(range(1, 9))


async def test_an_event_that_keeps_failing_is_dead_lettered_and_the_rest_applied(nc, registry_stream, store) -> None:
    await publish(registry_stream, range(1, 6))
    follower = StreamFollower("test", store, recorder({3: -1}), batch_size=100, max_attempts=2)
    async with following(follower, nc):
        await eventually(lambda: rows(store), lambda r: len(r) == 4, timeout=20)
        letters = await eventually(lambda: registry_stream.stream_info("DEADLETTER"), lambda i: i.state.messages == 1)
    assert sorted(await rows(store)) == [1, 2, 4, 5]
    assert letters.state.messages == 1
    letter = await registry_stream.get_msg("DEADLETTER", 1)
    assert letter.subject == "deadletter.test.registry.370303.volunteer.registered"
    assert "cannot apply 3 yet" in letter.headers["Beacon-Reason"]
    assert await follower.checkpoint("REGISTRY") == 5
