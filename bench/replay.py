"""Replay benchmark: how fast a stream reads back, and how fast reporting rebuilds from it.

Publishes a synthetic city (pipelined `publish_async` with Nats-Msg-Id): into REGISTRY a district
OrgUnitCreated and then VolunteerRegistered across ~100 communities, into POINTS one
PointsAccountOpened per volunteer. Then measures over REGISTRY:
(a) the ceiling, a bare nats-py ordered push consumer counting messages in a callback;
(b) shared.replay.read_stream, counting messages;
and (c) a full rebuild of reporting's Figures projection (Projector.rebuild) over every stream,
into a SQLite file in a temp dir (or --database-url); the figures are checked afterwards.

A phase that stops making progress for --stall-seconds, or whose subscription drops messages
(nats-py slow consumer), fails the benchmark (exit 1) after the other phases' figures are
printed. Each phase has its own connection. Starts its own nats-server. Prints its figures last
as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench._common import (
    NatsErrors,
    Stalled,
    Stopwatch,
    current_rss_mb,
    emit,
    exit_cleanly_on_sigterm,
    jetstream,
    local_nats_server,
    peak_rss_mb,
    progress,
    rate,
    ratio,
    watched,
)
from services.reporting.projection import Figures
from shared.bus import CONTEXTS, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import Event, catalog
from shared.db import make_engine
from shared.events.points import PointsAccountOpened
from shared.events.registry import OrgUnitCreated, VolunteerRegistered
from shared.replay import Projector, last_sequence, read_stream

CONSENTED = datetime(2026, 1, 1, tzinfo=UTC)

NAME = "replay"
DISTRICT = "370303"
STREETS, COMMUNITIES_PER_STREET = 10, 10
AGE_BANDS = ("under_18", "18_34", "35_59", "60_plus")
STATUSES = ("masses", "party_member", "league_member", "public_servant")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="messages published in all: 1 district, then volunteers split evenly between "
        "VolunteerRegistered (REGISTRY) and PointsAccountOpened (POINTS) (default 200000)",
    )
    parser.add_argument(
        "--chunk", type=int, default=2000, help="publish_async futures awaited per chunk (default 2000)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="read_stream and Projector batch size (default 1000)"
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=15.0,
        help="fail a phase that makes no progress for this long (default 15)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://... for the projection (a throwaway schema is created and dropped); "
        "default: a SQLite file in a temp dir",
    )
    args = parser.parse_args(argv)
    if args.events < 3 or args.chunk < 1 or args.batch_size < 1 or args.stall_seconds <= 0:
        parser.error("--events must be at least 3, sizes positive")
    return args


class Publisher:
    """Pipelined publishes, awaiting the acks a chunk at a time."""

    def __init__(self, js: JetStreamContext, chunk: int) -> None:
        self.js, self.chunk = js, chunk
        self.pending: list[asyncio.Future[Any]] = []
        self.stored = 0

    async def publish(self, stream: str, event: Event, **envelope: Any) -> None:
        env = catalog.envelope(event, **envelope)
        future = await self.js.publish_async(
            catalog.subject_of(env), env.to_json(), headers={"Nats-Msg-Id": str(env.event_id)}, stream=stream
        )
        self.pending.append(future)
        if len(self.pending) >= self.chunk:
            await self.flush()

    async def flush(self) -> None:
        acks = await asyncio.gather(*self.pending)
        self.stored += sum(1 for ack in acks if not ack.duplicate)
        self.pending.clear()


async def publish_city(js: JetStreamContext, volunteers: int, chunk: int) -> int:
    pub = Publisher(js, chunk)
    await pub.publish(
        "REGISTRY",
        OrgUnitCreated(
            code=DISTRICT,
            parent_code="370300",
            level="district",
            name="张店区",
            population=600_000,
            party_members=40_000,
        ),
        aggregate_id=DISTRICT,
        aggregate_version=1,
        org_path=(DISTRICT,),
        actor="bench",
    )
    for n in range(1, volunteers + 1):
        street_no, community_no = n % STREETS + 1, (n // STREETS) % COMMUNITIES_PER_STREET + 1
        street = f"{DISTRICT}{street_no:03d}000"
        community = f"{DISTRICT}{street_no:03d}{community_no:03d}"
        path, number = (DISTRICT, street, community), f"V{n:08d}"
        await pub.publish(
            "REGISTRY",
            VolunteerRegistered(
                volunteer_number=number,
                community_code=community,
                age_band=AGE_BANDS[n % 4],
                gender="female" if n % 2 else "male",
                political_status=STATUSES[n % 7 % 4],
                skills=["first_aid"],
                consented_at=CONSENTED,
            ),
            aggregate_id=number,
            aggregate_version=1,
            org_path=path,
            actor="bench",
        )
        await pub.publish(
            "POINTS",
            PointsAccountOpened(volunteer_number=number),
            aggregate_id=number,
            aggregate_version=1,
            org_path=path,
            actor="system:points",
        )
    await pub.flush()
    return pub.stored


def dropped(nats_errors: NatsErrors) -> Callable[[], str | None]:
    """The client dropped messages of a subscription (slow consumer): nats-py's ordered consumer
    has already counted them as delivered, so they are lost to the reader for good."""

    def check() -> str | None:
        drops = nats_errors.count("SlowConsumerError")
        return f"the client dropped {drops} messages as a slow consumer" if drops else None

    return check


class Count:
    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        return self.value


async def ceiling(js: JetStreamContext, stream: str, last: int, batch_size: int, count: Count) -> int:
    """A bare ordered consumer: count messages in a callback until the last one arrives.

    Limits high enough that the client never drops a message as a slow consumer."""
    done = asyncio.Event()

    async def on_message(_msg: object) -> None:
        count.value += 1
        if count.value >= last:
            done.set()

    sub = await js.subscribe(
        ">",
        stream=stream,
        ordered_consumer=True,
        cb=on_message,
        idle_heartbeat=2.0,
        pending_msgs_limit=10_000_000,
        pending_bytes_limit=4 * 1024 * 1024 * 1024,
    )
    try:
        await done.wait()
    finally:
        await sub.unsubscribe()
    return count.value


async def read_all(nc: Client, stream: str, last: int, batch_size: int, count: Count) -> int:
    async for batch in read_stream(nc, stream, start=1, stop=last, batch_size=batch_size):
        count.value += len(batch)
    return count.value


async def run(args: argparse.Namespace, workdir: Path, figures: dict[str, Any], failures: list[str]) -> None:
    volunteers = (args.events - 1) // 2
    pg_schema: str | None = None
    if args.database_url and make_url(args.database_url).get_backend_name() == "postgresql":
        backend = "postgresql"
        pg_schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = make_engine(args.database_url)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{pg_schema}"'))
        await admin.dispose()
        engine = make_engine(args.database_url, connect_args={"server_settings": {"search_path": pg_schema}})
    elif args.database_url:
        backend = make_url(args.database_url).get_backend_name()
        engine = make_engine(args.database_url)
    else:
        backend = "sqlite"
        engine = make_engine(f"sqlite:///{workdir / 'reporting.db'}")
    figures["database"] = backend

    try:
        with local_nats_server(workdir) as server:
            async with jetstream(server.url) as (_nc, js, _errors):
                for context in CONTEXTS:
                    await ensure_stream(js, context_stream(context, StreamSettings()))
                await ensure_stream(js, dead_letter_stream(StreamSettings()))

                progress(
                    f"publishing 1 district + {volunteers} volunteers into REGISTRY and POINTS "
                    f"(publish_async, chunks of {args.chunk})"
                )
                watch = Stopwatch()
                stored = await publish_city(js, volunteers, args.chunk)
                publish_s = watch.seconds
                registry_last = await last_sequence(js, "REGISTRY")
                points_last = await last_sequence(js, "POINTS")
                total = sum([await last_sequence(js, s) for s in ("REGISTRY", "DISPATCH", "POINTS")])
                progress(
                    f"  {stored} stored in {publish_s:.2f}s: {rate(stored, publish_s)} msgs/s "
                    f"(REGISTRY {registry_last}, POINTS {points_last})"
                )
                if stored != 1 + 2 * volunteers or total != stored:
                    raise SystemExit(f"expected {1 + 2 * volunteers} messages in the streams, found {total}")
                figures.update(
                    registry_msgs=registry_last,
                    points_msgs=points_last,
                    total_msgs=total,
                    publish_seconds=round(publish_s, 3),
                    publish_msgs_per_s=rate(stored, publish_s),
                )

            # (a) the ceiling
            progress(f"(a) ceiling: bare ordered consumer over REGISTRY ({registry_last} msgs)")
            async with jetstream(server.url) as (nc, js, nats_errors):
                count = Count()
                watch = Stopwatch()
                try:
                    await watched(
                        ceiling(js, "REGISTRY", registry_last, args.batch_size, count),
                        count,
                        args.stall_seconds,
                        "ceiling",
                        dropped(nats_errors),
                        nc.close,
                    )
                    ceiling_s = watch.seconds
                    figures.update(ceiling_seconds=round(ceiling_s, 3), ceiling_msgs_per_s=rate(count.value, ceiling_s))
                    progress(f"  {count.value} in {ceiling_s:.2f}s: {figures['ceiling_msgs_per_s']} msgs/s")
                except Stalled as stalled:
                    failures.append(f"{stalled} of {registry_last}")
                    progress(f"  FAILED: {stalled}")
                figures["ceiling_slow_consumer_drops"] = nats_errors.count("SlowConsumerError")

            # (b) shared.replay.read_stream
            progress(f"(b) shared.replay.read_stream over REGISTRY, batches of {args.batch_size}")
            async with jetstream(server.url) as (nc, js, nats_errors):
                count = Count()
                watch = Stopwatch()
                try:
                    await watched(
                        read_all(nc, "REGISTRY", registry_last, args.batch_size, count),
                        count,
                        args.stall_seconds,
                        "read_stream",
                        dropped(nats_errors),
                        nc.close,
                    )
                    read_s = watch.seconds
                    figures.update(
                        read_stream_seconds=round(read_s, 3), read_stream_msgs_per_s=rate(count.value, read_s)
                    )
                    progress(f"  {count.value} in {read_s:.2f}s: {figures['read_stream_msgs_per_s']} msgs/s")
                    if count.value != registry_last:
                        failures.append(f"read_stream yielded {count.value} of {registry_last} messages")
                except Stalled as stalled:
                    failures.append(f"{stalled} of {registry_last}")
                    progress(f"  FAILED: {stalled}")
                figures["read_stream_msgs_read"] = count.value
                figures["read_stream_slow_consumer_drops"] = nats_errors.count("SlowConsumerError")

            # (c) the rebuild
            progress(
                f"(c) rebuild of reporting's Figures into {backend} over {', '.join(CONTEXTS)} "
                f"({total} msgs), batches of {args.batch_size}"
            )
            async with jetstream(server.url) as (nc, js, nats_errors):
                projector = Projector(Figures(), engine, batch_size=args.batch_size)
                await projector.setup()
                figures["rss_before_rebuild_mb"] = current_rss_mb()
                seen = Count()  # messages read so far, over every stream
                done: dict[str, int] = {}

                def on_progress(stream: str, sequence: int, _stop: int) -> None:
                    done[stream] = sequence
                    seen.value = sum(done.values())

                watch = Stopwatch()
                try:
                    generation = await watched(
                        projector.rebuild(nc, progress=on_progress),
                        seen,
                        args.stall_seconds,
                        "rebuild",
                        dropped(nats_errors),
                        nc.close,
                    )
                    rebuild_s = watch.seconds
                    figures.update(rebuild_seconds=round(rebuild_s, 3), rebuild_events_per_s=rate(total, rebuild_s))
                    progress(
                        f"  {projector.applied_total} applied in {rebuild_s:.2f}s: "
                        f"{figures['rebuild_events_per_s']} events/s"
                    )
                    # The figures must add up, with nothing dead-lettered.
                    counters = projector.projection.figure_tables(generation).counters
                    async with engine.connect() as conn:
                        registered, opened = [
                            await conn.scalar(
                                select(func.sum(counters.c.value)).where(
                                    counters.c.node_code == DISTRICT, counters.c.figure == figure
                                )
                            )
                            for figure in ("volunteers.registered", "points.accounts_opened")
                        ]
                        figures["rebuild_figure_rows"] = await conn.scalar(select(func.count()).select_from(counters))
                    parked = await last_sequence(js, "DEADLETTER")
                    if registered != volunteers or opened != volunteers or parked:
                        failures.append(
                            f"rebuilt figures wrong: {registered} registered and {opened} accounts "
                            f"opened of {volunteers}, {parked} dead letters"
                        )
                except Stalled as stalled:
                    failures.append(f"{stalled} ({projector.applied_total} of {total} events applied)")
                    progress(f"  FAILED: {stalled}")
                figures["rebuild_events_applied"] = projector.applied_total
                figures["rebuild_slow_consumer_drops"] = nats_errors.count("SlowConsumerError")
    finally:
        await engine.dispose()
        if pg_schema:
            admin = make_engine(args.database_url)
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{pg_schema}" CASCADE'))
            await admin.dispose()


def main(argv: list[str]) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    figures: dict[str, Any] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="beacon-bench-") as tmp:
        asyncio.run(run(args, Path(tmp), figures, failures))
    ceiling_rate = figures.get("ceiling_msgs_per_s")
    figures["read_stream_vs_ceiling_ratio"] = ratio(figures.get("read_stream_msgs_per_s"), ceiling_rate)
    figures["rebuild_vs_ceiling_ratio"] = ratio(figures.get("rebuild_events_per_s"), ceiling_rate)
    figures["peak_rss_mb"] = peak_rss_mb()
    if failures:
        figures["failures"] = failures
        print(f"FAILED: {'; '.join(failures)}", file=sys.stderr, flush=True)
    emit(NAME, figures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
