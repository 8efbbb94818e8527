"""A stream holding an event in two schema versions (v1 from before the change, v2 after) replays
in reporting to the very figures of a stream that holds only v2, over a real NATS, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import nats
import pytest
from sqlalchemy import func, select

from services.reporting.projection import Figures
from shared.bus import StreamSettings, context_stream, dead_letter_stream, ensure_stream, stream_name
from shared.catalog import catalog
from shared.db import make_engine
from shared.envelope import EventEnvelope
from shared.events import points as p
from shared.replay import Projector
from tests.infra.city_events import AT_HEPING, AT_XINGFU, DEC_5, DISTRICT, NOV_2, NOV_20, Streams, a_city
from tests.infra.nats import nats_server

STAR_EVENTS = (p.StarLevelAwarded.spec.name, p.StarLevelLowered.spec.name)


@pytest.fixture
async def projector(database_url: str) -> AsyncIterator[Projector]:
    projector = Projector(Figures(), make_engine(database_url), batch_size=5)
    await projector.setup()
    yield projector
    await projector.engine.dispose()


def a_city_with_stars() -> Streams:
    city = a_city()  # V00000001 is awarded one star
    for award in (
        (p.StarLevelAwarded, "V00000002", 0, 2, "12", AT_XINGFU, NOV_2),
        (p.StarLevelLowered, "V00000002", 2, 1, "8", AT_XINGFU, DEC_5),
        (p.StarLevelAwarded, "V00000003", 0, 1, "3", AT_HEPING, NOV_2),
        (p.StarLevelAwarded, "V00000003", 1, 3, "40", AT_HEPING, NOV_20),
    ):
        model, number, before, after, hours, path, day = award
        event = model(volunteer_number=number, star_level=after, previous_star_level=before, total_hours=Decimal(hours))
        city.add(event, number, path, day)
    return city


def as_an_old_producer_published_it(envelope: EventEnvelope) -> bytes:
    """The v1 message points published before v2: schema_version 1, the levels under their v1 names."""
    payload = dict(envelope.payload)
    payload["level"], payload["previous_level"] = payload.pop("star_level"), payload.pop("previous_star_level")
    return envelope.model_copy(update={"schema_version": 1, "payload": payload}).to_json()


async def rebuilt_from(projector: Projector, streams: dict[str, list[tuple[str, bytes, str]]]) -> tuple[dict, int]:
    """Figures rebuilt from a fresh NATS holding `streams` (subject, body, message id), and how
    many messages the rebuild parked."""
    with nats_server() as url:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, dead_letter_stream(StreamSettings()))
            for context, messages in streams.items():
                await ensure_stream(js, context_stream(context, StreamSettings()))
                for subject, body, msg_id in messages:
                    await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, stream=stream_name(context))
            generation = await projector.rebuild(nc)
            parked = (await js.stream_info("DEADLETTER")).state.messages
        finally:
            await nc.close()
    counters = projector.projection.figure_tables(generation).counters
    async with projector.engine.connect() as conn:
        rows = await conn.execute(
            select(counters.c.node_code, counters.c.figure, counters.c.day, func.sum(counters.c.value))
            .group_by(counters.c.node_code, counters.c.figure, counters.c.day)
            .having(func.sum(counters.c.value) != 0)
        )
        return {(code, figure, day): int(value) for code, figure, day, value in rows}, parked


async def test_a_stream_of_v1_and_v2_star_events_replays_to_the_figures_of_v2_alone(projector) -> None:
    city = a_city_with_stars()
    only_v2: dict[str, list[tuple[str, bytes, str]]] = {}
    mixed: dict[str, list[tuple[str, bytes, str]]] = {}
    old = 0
    for context, events in city.by_context.items():
        for envelope, _ in events:
            subject, msg_id = catalog.subject_of(envelope), str(envelope.event_id)
            only_v2.setdefault(context, []).append((subject, envelope.to_json(), msg_id))
            # The first star events were published before v2: the stream holds them as v1.
            if envelope.type in STAR_EVENTS and old < 3:
                old += 1
                body = as_an_old_producer_published_it(envelope)
                assert json.loads(body)["schema_version"] == 1
            else:
                body = envelope.to_json()
            mixed.setdefault(context, []).append((subject, body, msg_id))
    assert old == 3 and sum(1 for _, body, _ in mixed["points"] if b'"level"' in body) == 3

    from_mixed, parked_mixed = await rebuilt_from(projector, mixed)
    from_v2, parked_v2 = await rebuilt_from(projector, only_v2)

    assert (parked_mixed, parked_v2) == (0, 0)
    assert from_mixed == from_v2
    stars = {}
    for (code, figure, _), value in from_mixed.items():
        if code == DISTRICT and figure.startswith("stars."):
            stars[figure] = stars.get(figure, 0) + value
    # V1: one star; V2: two, then down to one; V3: one, then three.
    assert {f: v for f, v in stars.items() if v} == {"stars.level.1": 2, "stars.level.3": 1}
