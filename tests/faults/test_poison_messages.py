"""Poison among good events: in each context's stream, 1% of the messages cannot be applied:
undecodable bytes and invalid payloads (dead-lettered at once: no retry can mend them), and good
envelopes whose handling fails every time (retried with a growing delay up to the limit, then
dead-lettered). All of them end in the dead-letter stream with the reason; every other event is
applied once and every consumer drains."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from faststream.nats import NatsBroker
from sqlalchemy import Column, MetaData, String, Table, select

from shared.bus import (
    CONSUMER,
    DELIVERIES,
    ORIGINAL_SEQUENCE,
    REASON,
    StreamSettings,
    context_stream,
    dead_letter_stream,
    ensure_stream,
    retry_stream,
)
from shared.catalog import Event, catalog
from shared.db import make_engine
from shared.envelope import EventEnvelope
from shared.events.dispatch import ServiceHoursConfirmed
from shared.events.points import PointsAccountOpened
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore, EventStoreSchema
from shared.subscriber import Reactor, RetryPolicy, subscribe
from tests.factories import PATH, registered
from tests.infra.points import DispatchRecords
from tests.infra.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.nats]

GOOD_PER_STREAM = 396
POISON = 4  # 1%: two malformed, two that fail in the handler every time
RETRY = RetryPolicy(max_attempts=8, first_delay_seconds=0.05, max_delay_seconds=0.4)

metadata = MetaData()
schema = EventStoreSchema(metadata)
applied = Table("applied", metadata, Column("consumer", String(40)), Column("event_id", String(36)))


def good_events(context: str) -> list[EventEnvelope]:
    if context == "registry":
        return [
            catalog.envelope(registered(n), aggregate_id=f"V{n:08d}", aggregate_version=1, org_path=PATH, actor="t")
            for n in range(1, GOOD_PER_STREAM + 1)
        ]
    if context == "dispatch":
        records = DispatchRecords()
        return [
            records.confirm(f"V{n:08d}", Decimal(2), datetime(2026, 11, 2, 2, tzinfo=UTC))[0]
            for n in range(1, GOOD_PER_STREAM + 1)
        ]
    return [
        catalog.envelope(PointsAccountOpened(volunteer_number=f"V{n:08d}"), aggregate_id=f"V{n:08d}", aggregate_version=1, org_path=PATH, actor="t")
        for n in range(1, GOOD_PER_STREAM + 1)
    ]  # fmt: skip


HANDLED: dict[str, type[Event]] = {
    "registry": VolunteerRegistered,
    "dispatch": ServiceHoursConfirmed,
    "points": PointsAccountOpened,
}


def malformed(envelope: EventEnvelope) -> list[bytes]:
    invalid = json.loads(envelope.to_json())
    invalid["payload"]["volunteer_number"] = "not a number"
    return [b"\x00\xffnot an envelope at all", json.dumps(invalid).encode()]


async def test_poison_in_every_stream_ends_in_the_dead_letter_stream_after_backing_off_and_the_rest_drains(
    js, nats_url, tmp_path
) -> None:
    store = EventStore(make_engine(f"sqlite:///{tmp_path / 'store.db'}"), schema)
    await store.create_tables()
    for context in HANDLED:
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    await ensure_stream(js, retry_stream(StreamSettings()))

    attempts: defaultdict[str, dict[int, float]] = defaultdict(dict)  # a failing event's deliveries, when
    failing: set[str] = set()
    broker = NatsBroker(nats_url)
    for context, model in HANDLED.items():
        reactor = Watched(f"poisoned-{context}", store, retry=RETRY)
        reactor.deliveries, reactor.failing = attempts, failing

        async def apply(tx: Any, envelope: EventEnvelope, _event: Event, name: str = reactor.name) -> None:
            event_id = str(envelope.event_id)
            if event_id in failing:
                raise ConnectionError("this one fails every time")
            await tx.conn.execute(applied.insert().values(consumer=name, event_id=event_id))

        reactor.on(model)(apply)
        subscribe(broker, reactor, context, batch_size=50, max_wait_seconds=0.05)

    expected_good: dict[str, set[str]] = {}
    poison_sequences: dict[str, dict[int, str]] = {}  # stream -> sequence -> kind
    for context in HANDLED:
        good = good_events(context)
        stream = context.upper()
        subject = catalog.subject_of(good[0])
        spots = {GOOD_PER_STREAM * k // POISON + 7: k for k in range(POISON)}  # spread among the good ones
        expected_good[context] = set()
        poison_sequences[stream] = {}
        extra = 0
        for index, envelope in enumerate(good):
            if index in spots:
                kind = spots[index]
                if kind < 2:
                    body, label = malformed(envelope)[kind], "malformed"
                else:
                    failing.add(str(envelope.event_id))
                    body, label = envelope.to_json(), "failing"
                ack = await js.publish(
                    subject, body, headers={"Nats-Msg-Id": f"poison-{context}-{kind}"}, stream=stream
                )
                poison_sequences[stream][ack.seq] = label
                extra += 1
                if kind >= 2:
                    continue  # it took the good event's place
            await js.publish(
                catalog.subject_of(envelope),
                envelope.to_json(),
                headers={"Nats-Msg-Id": str(envelope.event_id)},
                stream=stream,
            )
            expected_good[context].add(str(envelope.event_id))
        assert extra == POISON

    await broker.start()
    try:
        total_poison = POISON * len(HANDLED)
        letters = await eventually(lambda: _dead_letters(js), lambda found: len(found) >= total_poison, timeout=60)
        assert len(letters) == total_poison
        for context in HANDLED:
            stream, durable = context.upper(), f"poisoned-{context}-{context}"
            info = await eventually(
                lambda stream=stream, durable=durable: js.consumer_info(stream, durable),
                lambda i: i.num_pending == 0 and i.num_ack_pending == 0,
            )
            assert info.num_pending == 0 and info.num_ack_pending == 0, durable
    finally:
        await broker.stop()

    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(applied.c.consumer, applied.c.event_id))).all()
    await store.engine.dispose()
    for context in HANDLED:
        mine = Counter(event_id for consumer, event_id in rows if consumer == f"poisoned-{context}")
        assert set(mine) == expected_good[context] and set(mine.values()) == {1}, context

    found = {(m.headers["Beacon-Stream"], int(m.headers[ORIGINAL_SEQUENCE])): m for m in letters}
    assert set(found) == {(stream, seq) for stream, seqs in poison_sequences.items() for seq in seqs}
    for (stream, seq), letter in found.items():
        assert letter.headers[CONSUMER] == f"poisoned-{stream.lower()}"
        if poison_sequences[stream][seq] == "malformed":
            assert letter.headers[DELIVERIES] == "1"  # refused at once: a retry cannot mend it
            assert letter.headers[REASON]
        else:
            assert letter.headers[DELIVERIES] == str(RETRY.max_attempts)
            assert f"failed {RETRY.max_attempts} times" in letter.headers[REASON]
    # The failing ones were tried up to the limit, each retry later than the one before by at
    # least the policy's delay: it backed off, no hot loop.
    assert len(attempts) == 2 * len(HANDLED)
    for event_id, deliveries in attempts.items():
        assert sorted(deliveries) == list(range(1, RETRY.max_attempts + 1)), event_id
        times = [deliveries[n] for n in sorted(deliveries)]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= 0.8 * RETRY.delay(attempt) for attempt, gap in enumerate(gaps, start=1)), gaps
        assert times[-1] - times[0] > 0.1
    print(f"\n{len(letters)} poison messages dead-lettered; failing ones retried over "
          f"{min(_span(d) for d in attempts.values()):.2f}-{max(_span(d) for d in attempts.values()):.2f}s")  # fmt: skip


class Watched(Reactor):
    """A reactor that notes when each delivery of a failing event arrived (its delivery count is
    the server's)."""

    deliveries: defaultdict[str, dict[int, float]]
    failing: set[str]

    async def process(self, js: Any, msgs: list[Any]) -> None:
        for msg in msgs:
            try:
                event_id = json.loads(msg.data)["event_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if event_id in self.failing:
                self.deliveries[event_id].setdefault(msg.metadata.num_delivered, time.monotonic())
        await super().process(js, msgs)


def _span(deliveries: dict[int, float]) -> float:
    return max(deliveries.values()) - min(deliveries.values())


async def _dead_letters(js: Any) -> list[Any]:
    info = await js.stream_info("DEADLETTER")
    return [await js.get_msg("DEADLETTER", seq) for seq in range(1, info.state.last_seq + 1)]
