"""The outbox relay over a real NATS JetStream, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import nats
import pytest
from sqlalchemy import select

from shared.bus import StreamSettings, context_stream, ensure_stream
from shared.eventstore import EventStore
from shared.outbox import OutboxRelay, RelaySettings
from tests.factories import PATH, registered
from tests.infra.nats import restartable_nats_server


async def append(store: EventStore, count: int, start: int = 1) -> list[str]:
    ids = []
    for n in range(start, start + count):
        async with store.transaction() as tx:
            (envelope,) = await tx.record(f"V{n:08d}", 0, [registered(n)], org_path=PATH, actor="t")
            ids.append(str(envelope.event_id))
    return ids


async def stream_messages(js, stream: str = "REGISTRY") -> list:
    info = await js.stream_info(stream)
    return [await js.get_msg(stream, seq) for seq in range(1, info.state.last_seq + 1)]


async def unpublished(store: EventStore) -> int:
    return await store.outbox_depth()


async def test_relay_publishes_in_outbox_order_with_the_event_id_as_message_id(store, js) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    ids = await append(store, 25)
    relay = OutboxRelay(store, js, "REGISTRY", RelaySettings(batch_size=10))
    while await relay.publish_pending():
        pass

    messages = await stream_messages(js)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ids
    assert {m.subject for m in messages} == {"registry.370303.volunteer.registered"}
    assert await unpublished(store) == 0
    outbox = store.schema.outbox
    async with store.engine.connect() as conn:
        sequences = list((await conn.execute(select(outbox.c.stream_sequence).order_by(outbox.c.position))).scalars())
    assert sequences == list(range(1, 26))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # replicas share PostgreSQL
async def test_two_replicas_relays_on_one_outbox_publish_each_row_once_and_in_order(store, js) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    ids = await append(store, 60)
    relays = [OutboxRelay(store, js, "REGISTRY", RelaySettings(batch_size=7)) for _ in range(2)]

    async def drain(relay: OutboxRelay) -> None:
        while await store.outbox_depth():
            await relay.publish_pending()
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(relay) for relay in relays))

    # Each row went out once (JetStream would drop a second copy: the relays' counts would not).
    assert sum(relay.published_total for relay in relays) == 60
    assert [m.headers["Nats-Msg-Id"] for m in await stream_messages(js)] == ids


async def test_a_crash_between_publish_and_mark_publishes_nothing_twice(store, js) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    ids = await append(store, 10)

    class Crash(Exception):
        pass

    async def crash(_rows) -> None:
        raise Crash

    crashing = OutboxRelay(store, js, "REGISTRY")
    crashing.after_publish = crash
    with pytest.raises(Crash):
        await crashing.publish_pending()
    assert await unpublished(store) == 10  # stored in the stream, not marked

    restarted = OutboxRelay(store, js, "REGISTRY")
    assert await restarted.publish_pending() == 10
    messages = await stream_messages(js)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ids  # each once, in order
    assert await unpublished(store) == 0


async def test_a_killed_relay_process_loses_nothing_and_duplicates_nothing(store, js, nats_url, database_url) -> None:
    """A real crash: the relay's process dies (os._exit) after the acks, before marking."""
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    ids = await append(store, 30)
    child = textwrap.dedent(
        f"""
        import asyncio, os, nats
        from sqlalchemy import MetaData
        from shared.db import make_engine
        from shared.eventstore import EventStore, EventStoreSchema
        from shared.outbox import OutboxRelay

        async def main():
            nc = await nats.connect({nats_url!r})
            store = EventStore(make_engine({database_url!r}), EventStoreSchema(MetaData()))
            relay = OutboxRelay(store, nc.jetstream(), "REGISTRY")
            async def die(rows):
                os._exit(137)
            relay.after_publish = die
            await relay.publish_pending()

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", child], cwd=os.getcwd(), timeout=60)
    assert result.returncode == 137
    assert len(await stream_messages(js)) == 30
    assert await unpublished(store) == 30

    relay = OutboxRelay(store, js, "REGISTRY")
    assert await relay.publish_pending() == 30
    assert [m.headers["Nats-Msg-Id"] for m in await stream_messages(js)] == ids
    assert await unpublished(store) == 0


async def test_relay_wakes_on_commit_without_waiting_for_its_poll(store, js) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    relay = OutboxRelay(store, js, "REGISTRY", RelaySettings(idle_poll_seconds=60))
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)  # the relay is now idle, waiting
        await append(store, 1)
        for _ in range(100):
            if relay.published_total:
                break
            await asyncio.sleep(0.05)
        assert relay.published_total == 1
    finally:
        relay.stop()
        await task


async def test_events_committed_while_nats_is_down_are_published_when_it_returns(store) -> None:
    with restartable_nats_server() as server:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream()
        await ensure_stream(js, context_stream("registry", StreamSettings()))
        relay = OutboxRelay(store, js, "REGISTRY", RelaySettings(ack_timeout_seconds=0.5, retry_max_seconds=0.5))
        task = asyncio.create_task(relay.run())
        try:
            server.stop()
            ids = await append(store, 5)
            await asyncio.sleep(1.0)
            assert await unpublished(store) == 5  # kept, not lost, while NATS is away
            server.start()
            for _ in range(200):
                if await unpublished(store) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await unpublished(store) == 0
            assert [m.headers["Nats-Msg-Id"] for m in await stream_messages(js)] == ids
        finally:
            relay.stop()
            await task
            await nc.close()
