"""The shared subscriber pattern (Reactor) over a real NATS JetStream, on both stores."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest
from faststream.nats import NatsBroker
from sqlalchemy import Column, MetaData, String, Table, select

from shared.bus import (
    REASON,
    RETRY_STREAM,
    StreamSettings,
    context_stream,
    dead_letter_stream,
    ensure_stream,
    retry_stream,
    send_back,
)
from shared.catalog import EventRejected
from shared.db import make_engine
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore, EventStoreSchema
from shared.subscriber import Reactor, RetryPolicy, subscribe
from tests.factories import registered_envelope
from tests.infra.waiting import eventually

metadata = MetaData()
schema = EventStoreSchema(metadata)
applied = Table("applied", metadata, Column("volunteer_number", String(20), nullable=False))


@pytest.fixture
async def store(database_url: str):
    events = EventStore(make_engine(database_url), schema)
    await events.create_tables()
    yield events
    await events.engine.dispose()


@pytest.fixture
async def streams(js):
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    await ensure_stream(js, retry_stream(StreamSettings()))
    return js


async def applied_numbers(store: EventStore) -> Counter[str]:
    async with store.engine.connect() as conn:
        return Counter((await conn.execute(select(applied.c.volunteer_number))).scalars())


async def dead_letters(js) -> list:
    info = await js.stream_info("DEADLETTER")
    return [await js.get_msg("DEADLETTER", seq) for seq in range(1, info.state.last_seq + 1)]


async def publish(js, body: bytes, msg_id: str, subject: str = "registry.370303.volunteer.registered") -> None:
    await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, stream="REGISTRY")


def reactor_for(store: EventStore, failures: dict[str, int] | None = None, retry: RetryPolicy | None = None) -> Reactor:
    reactor = Reactor("test", store, retry=retry or RetryPolicy(max_attempts=3, first_delay_seconds=0.1))
    failures = failures if failures is not None else {}

    @reactor.on(VolunteerRegistered)
    async def record(tx, envelope, event: VolunteerRegistered) -> None:
        await tx.conn.execute(applied.insert().values(volunteer_number=event.volunteer_number))
        if failures.get(event.volunteer_number, 0) > 0:
            failures[event.volunteer_number] -= 1
            raise ConnectionError("database went away")  # after the write: it must roll back
        if event.volunteer_number == "V00000666":
            raise EventRejected("volunteer 666 is refused by a rule")

    return reactor


async def running(nats_url: str, reactor: Reactor) -> NatsBroker:
    broker = NatsBroker(nats_url)
    subscribe(broker, reactor, "registry", batch_size=20, max_wait_seconds=0.05)
    await broker.start()
    return broker


async def test_each_event_is_applied_once_even_when_delivered_twice(store, streams, nats_url) -> None:
    broker = await running(nats_url, reactor_for(store))
    try:
        for n in range(1, 6):
            envelope = registered_envelope(n)
            await publish(streams, envelope.to_json(), str(envelope.event_id))
            # The same event again under another message id: past the duplicate window.
            await publish(streams, envelope.to_json(), f"again-{envelope.event_id}")
        done = await eventually(lambda: applied_numbers(store), lambda c: sum(c.values()) >= 5)
        await eventually(
            lambda: streams.consumer_info("REGISTRY", "test-registry"),
            lambda i: i.num_ack_pending == 0 and i.num_pending == 0,
        )
        done = await applied_numbers(store)
        assert done == Counter({f"V{n:08d}": 1 for n in range(1, 6)})
    finally:
        await broker.stop()


async def test_a_malformed_event_goes_to_the_dead_letter_stream_and_the_rest_goes_on(store, streams, nats_url) -> None:
    broker = await running(nats_url, reactor_for(store))
    try:
        good = registered_envelope(1)
        bad_payload = json.loads(registered_envelope(2).to_json())
        bad_payload["payload"]["age_band"] = "ancient"
        newer = json.loads(registered_envelope(3).to_json())
        newer["schema_version"] = 99
        await publish(streams, b"{not json", "m1")
        await publish(streams, json.dumps(bad_payload).encode(), "m2")
        await publish(streams, json.dumps(newer).encode(), "m3")
        await publish(streams, good.to_json(), "m4")

        await eventually(lambda: applied_numbers(store), lambda c: c["V00000001"] == 1)
        letters = await eventually(lambda: dead_letters(streams), lambda d: len(d) >= 3)
        reasons = [m.headers[REASON] for m in letters]
        assert len(reasons) == 3
        assert "malformed envelope" in reasons[0]
        assert "age_band" in reasons[1]
        assert "schema version 99 is not known" in reasons[2]
        assert letters[1].data == json.dumps(bad_payload).encode()  # the original, untouched
        assert {m.headers["Beacon-Consumer"] for m in letters} == {"test"}
        assert await applied_numbers(store) == Counter({"V00000001": 1})
    finally:
        await broker.stop()


async def test_a_passing_failure_is_retried_and_applied_once(store, streams, nats_url) -> None:
    failures = {"V00000001": 2}
    broker = await running(nats_url, reactor_for(store, failures))
    try:
        envelope = registered_envelope(1)
        await publish(streams, envelope.to_json(), "m1")
        await publish(streams, registered_envelope(2).to_json(), "m2")
        done = await eventually(lambda: applied_numbers(store), lambda c: c["V00000001"] == 1)
        assert done == Counter({"V00000001": 1, "V00000002": 1})
        assert failures["V00000001"] == 0  # it did fail twice first
        assert await dead_letters(streams) == []
    finally:
        await broker.stop()


async def test_an_event_failing_every_time_is_dead_lettered_after_the_limit(store, streams, nats_url) -> None:
    failures = {"V00000001": 1000}
    broker = await running(nats_url, reactor_for(store, failures))
    try:
        await publish(streams, registered_envelope(1).to_json(), "m1")
        await publish(streams, registered_envelope(2).to_json(), "m2")
        letters = await eventually(lambda: dead_letters(streams), lambda d: len(d) == 1)
        assert len(letters) == 1
        assert "failed 3 times" in letters[0].headers[REASON]
        assert letters[0].headers["Beacon-Deliveries"] == "3"
        assert failures["V00000001"] <= 1000 - 3  # at least three attempts
        assert await applied_numbers(store) == Counter({"V00000002": 1})
    finally:
        await broker.stop()


async def test_a_rule_rejection_is_dead_lettered_at_once(store, streams, nats_url) -> None:
    broker = await running(nats_url, reactor_for(store))
    try:
        await publish(streams, registered_envelope(666).to_json(), "m1")
        await publish(streams, registered_envelope(1).to_json(), "m2")
        letters = await eventually(lambda: dead_letters(streams), lambda d: len(d) == 1)
        assert "refused by a rule" in letters[0].headers[REASON]
        assert letters[0].headers["Beacon-Deliveries"] == "1"
        assert await eventually(lambda: applied_numbers(store), lambda c: c["V00000001"] == 1) == Counter(
            {"V00000001": 1}
        )
    finally:
        await broker.stop()


async def test_events_it_has_no_handler_for_are_acknowledged_and_skipped(store, streams, nats_url) -> None:
    from shared.catalog import catalog
    from shared.events.registry import SiteOpened

    broker = await running(nats_url, reactor_for(store))
    try:
        site = catalog.envelope(
            SiteOpened(
                site_id="s1",
                org_unit_code="370303001001",
                level="station",
                kind="community",
                name="和平站",
                opened_on=date(2026, 1, 1),
            ),
            aggregate_id="s1",
            aggregate_version=1,
            org_path=("370303",),
            actor="t",
        )
        await publish(streams, site.to_json(), "m1", subject="registry.370303.site.opened")
        await publish(streams, registered_envelope(1).to_json(), "m2")
        await eventually(lambda: applied_numbers(store), lambda c: c["V00000001"] == 1)
        info = await eventually(
            lambda: streams.consumer_info("REGISTRY", "test-registry"), lambda i: i.num_ack_pending == 0
        )
        assert info.num_ack_pending == 0 and info.num_pending == 0
        assert await dead_letters(streams) == []
    finally:
        await broker.stop()


async def test_a_dead_letter_sent_back_is_applied_once_its_cause_is_gone(store, streams, nats_url) -> None:
    refused = {"V00000007"}
    reactor = Reactor("test", store, retry=RetryPolicy(max_attempts=2, first_delay_seconds=0.05))

    @reactor.on(VolunteerRegistered)
    async def record(tx, envelope, event: VolunteerRegistered) -> None:
        if event.volunteer_number in refused:
            raise EventRejected("the rule for this volunteer is not deployed yet")
        await tx.conn.execute(applied.insert().values(volunteer_number=event.volunteer_number))

    broker = await running(nats_url, reactor)
    try:
        for n in (7, 8):
            envelope = registered_envelope(n)
            await publish(streams, envelope.to_json(), str(envelope.event_id))
        await eventually(lambda: applied_numbers(store), lambda c: c["V00000008"] == 1)
        (letter,) = await eventually(lambda: dead_letters(streams), lambda d: len(d) == 1)
        assert letter.headers[REASON] == "the rule for this volunteer is not deployed yet"

        refused.clear()  # the fix is deployed
        assert await send_back(streams, letter.seq) == "test"
        await eventually(lambda: applied_numbers(store), lambda c: c["V00000007"] == 1)
        # Sent back again, within the duplicate window: nothing is sent; past it, the inbox skips it.
        await send_back(streams, letter.seq)
        assert (await streams.stream_info(RETRY_STREAM)).state.messages == 1
        again = await streams.get_msg(RETRY_STREAM, 1)
        await streams.publish(
            again.subject, again.data, headers={**again.headers, "Nats-Msg-Id": "later"}, stream=RETRY_STREAM
        )
        await eventually(
            lambda: streams.consumer_info(RETRY_STREAM, "test-retry"),
            lambda i: i.num_pending == 0 and i.num_ack_pending == 0,
        )
        assert await applied_numbers(store) == Counter({"V00000007": 1, "V00000008": 1})
        assert len(await dead_letters(streams)) == 1  # the retry made no new letter
    finally:
        await broker.stop()
