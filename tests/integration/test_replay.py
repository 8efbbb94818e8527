"""Replay and projections over a real NATS JetStream: live, rebuilt, in any stream order."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from nats.aio.msg import Msg
from nats.errors import NoServersError, NotJSMessageError
from sqlalchemy import Column, String, func, inspect, select

from services.reporting.projection import Figures
from services.reporting.queries import figures_at, figures_for
from shared.bus import StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.db import make_engine
from shared.errors import Invalid
from shared.events.points import PointsAccountOpened
from shared.events.registry import OrgUnitCreated
from shared.replay import Projector, read_stream, sequences
from tests.factories import DISTRICT, PATH, registered, registered_envelope
from tests.infra.waiting import eventually


@pytest.fixture
async def streams(js):
    for context in ("registry", "dispatch", "points"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    return js


@pytest.fixture
async def projector(database_url: str):
    engine = make_engine(database_url)
    projector = Projector(Figures(), engine, batch_size=7)
    await projector.setup()
    yield projector
    await engine.dispose()


async def publish_city(js, volunteers: int, first: int = 1) -> None:
    district = catalog.envelope(
        OrgUnitCreated(
            code=DISTRICT, parent_code="370300", level="district", name="张店区", population=1000, party_members=100
        ),
        aggregate_id=DISTRICT,
        aggregate_version=1,
        org_path=(DISTRICT,),
        actor="t",
    )
    await js.publish("registry.370303.orgunit.created", district.to_json(), stream="REGISTRY")
    for n in range(first, first + volunteers):
        envelope = registered_envelope(n, party=n % 3 == 0)
        await js.publish("registry.370303.volunteer.registered", envelope.to_json(), stream="REGISTRY")
        opened = catalog.envelope(
            PointsAccountOpened(volunteer_number=f"V{n:08d}"),
            aggregate_id=f"V{n:08d}",
            aggregate_version=1,
            org_path=PATH,
            actor="system:points",
        )
        await js.publish("points.370303.account.opened", opened.to_json(), stream="POINTS")


async def figures(projector: Projector, generation: int | None = None) -> dict[tuple[str, str], int]:
    generation = generation or await projector.active_generation()
    counters = projector.projection.figure_tables(generation).counters
    async with projector.engine.connect() as conn:
        rows = await conn.execute(
            select(counters.c.node_code, counters.c.figure, func.sum(counters.c.value)).group_by(
                counters.c.node_code, counters.c.figure
            )
        )
        return {(code, figure): int(value) for code, figure, value in rows}


def caught_up(figures: dict[tuple[str, str], int], volunteers: int) -> bool:
    return (
        figures.get((DISTRICT, "points.accounts_opened"))
        == figures.get((DISTRICT, "volunteers.registered"))
        == volunteers
    )


async def test_read_stream_yields_every_message_in_order_and_stops_at_the_end(nc, streams) -> None:
    await publish_city(streams, 30)
    batches = [b async for b in read_stream(nc, "REGISTRY", start=1, stop=31, batch_size=8)]
    sequences = [m.metadata.sequence.stream for b in batches for m in b]
    assert sequences == list(range(1, 32))
    assert all(len(b) <= 8 for b in batches)
    tail = [m.metadata.sequence.stream async for b in read_stream(nc, "REGISTRY", start=29, stop=31) for m in b]
    assert tail == [29, 30, 31]
    assert [b async for b in read_stream(nc, "REGISTRY", start=40, stop=31)] == []


async def test_live_figures_follow_the_streams(nc, streams, projector) -> None:
    followers = [asyncio.create_task(projector.follow(nc, c)) for c in ("registry", "points")]
    try:
        await publish_city(streams, 12)
        live = await eventually(lambda: figures(projector), lambda f: caught_up(f, 12))
        assert live[(DISTRICT, "volunteers.registered")] == 12
        assert live[(PATH[2], "volunteers.political_status.party_member")] == 4
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def test_a_rebuild_from_zero_gives_the_live_figures_in_any_stream_order(nc, streams, projector) -> None:
    await publish_city(streams, 20)
    followers = [asyncio.create_task(projector.follow(nc, c)) for c in ("registry", "points")]
    try:
        live = await eventually(lambda: figures(projector), lambda f: caught_up(f, 20))
        first = await projector.rebuild(nc, stream_order=["points", "dispatch", "registry"])
        assert first == 2 and await projector.active_generation() == 2
        assert await figures(projector) == live
        projector.rebuild_chunk = 5  # transactions of a few events, each committing while the next is read
        second = await projector.rebuild(nc, stream_order=["registry", "points", "dispatch"])
        assert await figures(projector, second) == live
        # The followers moved to the new generation and keep it current.
        await publish_city(streams, 1, first=21)
        after = await eventually(
            lambda: figures(projector),
            lambda f: (
                f.get((DISTRICT, "points.accounts_opened")) == 21 and f.get((DISTRICT, "volunteers.registered")) == 21
            ),
        )
        assert after[(DISTRICT, "volunteers.registered")] == after[(DISTRICT, "points.accounts_opened")] == 21
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def test_an_event_the_projection_cannot_read_is_parked_and_the_rebuild_goes_on(nc, streams, projector) -> None:
    await publish_city(streams, 3)
    newer = json.loads(registered_envelope(9).to_json())
    newer["schema_version"] = 2
    await streams.publish("registry.370303.volunteer.registered", json.dumps(newer).encode(), stream="REGISTRY")
    await streams.publish("registry.370303.volunteer.registered", registered_envelope(10).to_json(), stream="REGISTRY")

    generation = await projector.rebuild(nc)
    result = await figures(projector, generation)
    assert result[(DISTRICT, "volunteers.registered")] == 4
    parked = await streams.get_msg("DEADLETTER", 1)
    assert "schema version 2 is not known" in parked.headers["Beacon-Reason"]
    assert parked.headers["Beacon-Consumer"] == "projection-figures"


async def test_a_long_stream_is_read_whole_without_a_gap(nc, streams) -> None:
    body = registered_envelope(1).to_json()
    for _chunk in range(0, 30_000, 2_000):
        futures = [
            await streams.publish_async("registry.370303.volunteer.registered", body, stream="REGISTRY")
            for _ in range(2_000)
        ]
        await asyncio.gather(*futures)
    expected = 1
    async for batch in read_stream(nc, "REGISTRY", start=1, stop=30_000, batch_size=500):
        for msg in batch:
            assert msg.metadata.sequence.stream == expected
            expected += 1
    assert expected == 30_001


async def test_a_follower_resumes_in_order_when_its_consumer_disappears(nc, streams) -> None:
    for n in range(1, 11):
        await streams.publish(
            "registry.370303.volunteer.registered", registered_envelope(n).to_json(), stream="REGISTRY"
        )
    seen: list[int] = []

    async def follow() -> None:
        async for batch in read_stream(nc, "REGISTRY", start=1, batch_size=4):
            seen.extend(m.metadata.sequence.stream for m in batch)

    task = asyncio.create_task(follow())
    try:
        await eventually(lambda: asyncio.sleep(0, len(seen)), lambda n: n == 10)
        for name in await streams.consumers_info("REGISTRY"):
            await streams.delete_consumer("REGISTRY", name.name)
        for n in range(11, 21):
            await streams.publish(
                "registry.370303.volunteer.registered", registered_envelope(n).to_json(), stream="REGISTRY"
            )
        await eventually(lambda: asyncio.sleep(0, len(seen)), lambda n: n >= 20, timeout=20)
        assert seen == list(range(1, 21))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_sequences_are_read_off_the_reply_subject_as_nats_py_reads_them(nc, streams) -> None:
    await publish_city(streams, 2)
    async for batch in read_stream(nc, "REGISTRY", start=2, stop=3):
        assert (
            [sequences(m) for m in batch]
            == [(m.metadata.sequence.stream, m.metadata.sequence.consumer) for m in batch]
            == [(2, 1), (3, 2)]
        )
    domain = Msg(nc, subject="x", reply="$JS.ACK.hub.ACCHASH.REGISTRY.c1.1.523.17.1700000000000000000.12.r7")
    assert sequences(domain) == (domain.metadata.sequence.stream, domain.metadata.sequence.consumer) == (523, 17)
    with pytest.raises(NotJSMessageError):
        sequences(Msg(nc, subject="x", reply="_INBOX.abc"))


async def publish_accounts_elsewhere(js, district: str, volunteers: int) -> None:
    """Points accounts opened in another district: points' stream then holds two districts."""
    for n in range(1, volunteers + 1):
        opened = catalog.envelope(
            PointsAccountOpened(volunteer_number=f"V9{n:07d}"), aggregate_id=f"V9{n:07d}", aggregate_version=1,
            org_path=(district,), actor="system:points",
        )  # fmt: skip
        await js.publish(f"points.{district}.account.opened", opened.to_json(), stream="POINTS")


async def test_a_rebuild_shared_out_among_processes_gives_the_same_figures(nc, streams, projector) -> None:
    await publish_city(streams, 12)
    await publish_accounts_elsewhere(streams, "370304", 5)
    followers = [asyncio.create_task(projector.follow(nc, c)) for c in ("registry", "points")]
    try:
        live = await eventually(
            lambda: figures(projector),
            lambda f: caught_up(f, 12) and f.get(("370304", "points.accounts_opened")) == 5,
        )
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    # Registry's stream whole, and points' in ranges: here and in two worker processes.
    projector.rebuild_processes = 3
    before = projector.applied_total
    generation = await projector.rebuild(nc)
    assert await projector.active_generation() == generation
    assert await figures(projector, generation) == live
    assert projector.applied_total - before == 1 + 12 * 2 + 5  # every event, once, in one process or another
    assert len(projector.worker_peak_rss_mb) == 2 and all(peak > 0 for peak in projector.worker_peak_rss_mb)
    # The ranges' checkpoints are settled: points' districts are applied up to the stream's end.
    async with projector.engine.connect() as conn:
        c = projector.checkpoints.c
        keys = dict((await conn.execute(select(c.stream, c.sequence).where(c.generation == generation))).all())
    last = (await streams.stream_info("POINTS")).state.last_seq
    assert keys == {"REGISTRY": 13, "POINTS.*": last}
    # Followers go on from there: only what comes after is folded.
    await publish_accounts_elsewhere(streams, "370305", 2)
    follower = asyncio.create_task(projector.follow(nc, "points"))
    try:
        after = await eventually(lambda: figures(projector), lambda f: f.get(("370305", "points.accounts_opened")) == 2)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert projector.applied_total - before == 1 + 12 * 2 + 5 + 2
    assert after == {**live, ("370305", "points.accounts_opened"): 2}


async def test_a_rebuild_whose_worker_fails_is_dropped_and_the_figures_keep_serving(nc, streams, projector) -> None:
    await publish_city(streams, 3)
    serving = await projector.rebuild(nc)
    kept = await figures(projector, serving)
    projector.rebuild_processes = 2
    projector.nats_connect = {
        "servers": ["nats://127.0.0.1:1"],
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
    }
    with pytest.raises(NoServersError):
        await projector.rebuild(nc)
    assert await projector.active_generation() == serving
    assert await figures(projector) == kept
    async with projector.engine.connect() as conn:
        generations = await conn.execute(select(projector.generations.c.generation))
        assert [g for (g,) in generations] == [serving]  # the failed one left no tables behind
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert not [name for name in tables if name.endswith(f"_g{serving + 1}")]


async def test_figures_at_a_moment_replay_that_day_up_to_the_moment(nc, streams, projector) -> None:
    await publish_city(streams, 0)  # the district
    city = ZoneInfo("Asia/Shanghai")
    day = date(2026, 11, 20)
    for n, at in (
        (1, datetime(2026, 11, 19, 20, 0, tzinfo=city)),
        (2, datetime(2026, 11, 20, 9, 0, tzinfo=city)),
        (3, datetime(2026, 11, 20, 15, 0, tzinfo=city)),
    ):
        envelope = catalog.envelope(
            registered(n), aggregate_id=f"V{n:08d}", aggregate_version=1, org_path=PATH, actor="t", occurred_at=at
        )
        await streams.publish("registry.370303.volunteer.registered", envelope.to_json(), stream="REGISTRY")
    generation = await projector.rebuild(nc)

    async def registered_at(moment: datetime) -> int:
        answer = await figures_at(projector.engine, projector.projection, generation, nc, DISTRICT, moment)
        assert answer["as_of"] == moment.isoformat()
        return answer["figures"].get("volunteers.registered", 0)

    assert await registered_at(datetime(2026, 11, 19, 23, 59, tzinfo=city)) == 1
    assert await registered_at(datetime(2026, 11, 20, 9, 0, tzinfo=city)) == 2  # at the moment itself: counted
    assert await registered_at(datetime(2026, 11, 20, 12, 0, tzinfo=city)) == 2
    assert await registered_at(datetime(2026, 11, 20, 16, 0, tzinfo=city)) == 3
    assert await registered_at(datetime(2026, 11, 21, 0, 0, tzinfo=city)) == 3  # a day with nothing stored since
    day_level = await figures_for(projector.engine, projector.projection, generation, DISTRICT, end=day)
    assert day_level["figures"]["volunteers.registered"] == 3
    with pytest.raises(Invalid, match="time zone"):
        await figures_at(projector.engine, projector.projection, generation, nc, DISTRICT, datetime(2026, 11, 20, 12))


class FiguresWithANote(Figures):
    """Figures as a later version of the code might define them: one more column."""

    def figure_tables(self, generation: int):  # noqa: ANN201
        tables = super().figure_tables(generation)
        if "note" not in tables.teams.c:
            tables.teams.append_column(Column("note", String(20)))
        return tables


async def test_a_generation_built_by_an_earlier_version_is_rebuilt_before_following(nc, streams, projector) -> None:
    await publish_city(streams, 4)
    earlier = await projector.rebuild(nc)
    counted = await figures(projector, earlier)
    assert not projector.stale

    later = Projector(FiguresWithANote(), projector.engine, batch_size=7)
    assert await later.setup() == earlier and later.stale
    follower = asyncio.create_task(later.follow(nc, "registry"))
    try:
        rebuilt = await eventually(later.active_generation, lambda g: g != earlier and not later.stale)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert not later.stale
    assert await figures(later, rebuilt) == counted
    async with projector.engine.connect() as conn:
        columns = await conn.run_sync(lambda sync: inspect(sync).get_columns(f"teams_g{rebuilt}"))
    assert "note" in {c["name"] for c in columns}
    again = Projector(FiguresWithANote(), projector.engine)
    assert await again.setup() == rebuilt and not again.stale


class FiguresOfOrdersPlacedFirst(Figures):
    """Figures as the version before rebuilds in ranges defined them: an order's row was made by
    its placing, so what the placing gives took no nulls."""

    def figure_tables(self, generation: int):  # noqa: ANN201
        tables = super().figure_tables(generation)
        for column in ("org_path", "placed_on", "placed_at", "window_start", "window_end"):
            tables.orders.c[column].nullable = False
        return tables


async def test_a_generation_whose_columns_take_nulls_otherwise_is_stale(nc, streams, projector) -> None:
    await publish_city(streams, 2)
    earlier = await Projector(FiguresOfOrdersPlacedFirst(), projector.engine).rebuild(nc)
    again = Projector(FiguresOfOrdersPlacedFirst(), projector.engine)
    assert await again.setup() == earlier and not again.stale
    now = Projector(Figures(), projector.engine)
    assert await now.setup() == earlier and now.stale  # the followers rebuild it before following


class FiguresFollowedWhole(Figures):
    """Figures as the version before the split followed them: every stream whole."""

    partitioned = ()


async def test_a_stream_followed_whole_before_it_was_split_goes_on_from_there_and_the_whole_follower_stops(
    nc, streams, projector
) -> None:
    await publish_city(streams, 5)
    before = Projector(FiguresFollowedWhole(), projector.engine, batch_size=7)
    follower = asyncio.create_task(before.follow(nc, "points"))
    try:
        await eventually(lambda: figures(projector), lambda f: f.get((DISTRICT, "points.accounts_opened")) == 5)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    generation = await projector.active_generation()
    assert await projector.checkpoint(generation, "POINTS") == 5

    split = Projector(Figures(), projector.engine, batch_size=7, discovery_seconds=0.1)
    follower = asyncio.create_task(split.follow(nc, "points"))
    try:
        await publish_city(streams, 3, first=6)
        await publish_accounts_elsewhere(streams, "370304", 2)
        after = await eventually(
            lambda: figures(projector),
            lambda f: (
                f.get((DISTRICT, "points.accounts_opened")) == 8 and f.get(("370304", "points.accounts_opened")) == 2
            ),
        )
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert split.applied_total == 3 + 2  # the five before the split were not folded again
    assert await split.caught_up(streams, generation, "POINTS")
    # A follower of the whole stream still running (a replica of the earlier version during a
    # rollout) finds its next batch applied already.
    last = await streams.stream_info("POINTS")
    batch = [m async for b in read_stream(nc, "POINTS", start=1, stop=last.state.last_seq) for m in b]
    assert await before._apply_with_retry(nc, generation, "POINTS", batch, live=True)
    assert before.applied_total == 5
    assert await figures(projector) == after
