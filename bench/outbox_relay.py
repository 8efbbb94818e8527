"""Outbox relay benchmark: event-store appends, the relay's publishing, and a naive baseline.

(a) append N VolunteerRegistered events (each its own aggregate V%08d at expected version 0),
    --per-tx events per `store.transaction()`, through `tx.record`;
(b) OutboxRelay(RelaySettings(batch_size=1000)) publishing them all to the REGISTRY stream,
    `publish_pending()` until it returns 0 (with the time split into reading the outbox,
    publishing and awaiting the acks, and marking the rows);
(c) for comparison, one awaited `js.publish` at a time (with Nats-Msg-Id) of the same bodies into
    a separate BASELINE stream, for --baseline-events of them.

Starts its own nats-server; SQLite in a temp dir unless --database-url names PostgreSQL (then a
throwaway schema is created and dropped). Prints its figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._common import (
    Stopwatch,
    jetstream,
    local_nats_server,
    main_of,
    progress,
    rate,
    ratio,
)
from shared.bus import StreamSettings, context_stream, ensure_stream, stream_config
from shared.db import make_engine
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore, EventStoreSchema
from shared.outbox import OutboxRelay, RelaySettings

CONSENTED = datetime(2026, 1, 1, tzinfo=UTC)

NAME = "outbox_relay"
# Appends run at well under 1,000 events/s on SQLite here (one aggregate per event), so the
# default keeps the whole benchmark under a minute on two cores; --events 100000 for the long run.
DEFAULT_EVENTS = 20_000
DISTRICT = "370303"
STREETS, COMMUNITIES_PER_STREET = 10, 10
AGE_BANDS = ("under_18", "18_34", "35_59", "60_plus")
STATUSES = ("masses", "party_member", "league_member", "public_servant")


def volunteer(n: int) -> tuple[VolunteerRegistered, tuple[str, ...]]:
    street_no, community_no = n % STREETS + 1, (n // STREETS) % COMMUNITIES_PER_STREET + 1
    street = f"{DISTRICT}{street_no:03d}000"
    community = f"{DISTRICT}{street_no:03d}{community_no:03d}"
    event = VolunteerRegistered(
        volunteer_number=f"V{n:08d}",
        community_code=community,
        age_band=AGE_BANDS[n % 4],
        gender="female" if n % 2 else "male",
        political_status=STATUSES[n % 7 % 4],
        skills=["first_aid"],
        consented_at=CONSENTED,
    )
    return event, (DISTRICT, street, community)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help=f"events appended and relayed (default {DEFAULT_EVENTS})"
    )
    parser.add_argument("--per-tx", type=int, default=100, help="events per append transaction (default 100)")
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=10_000,
        help="events for the one-at-a-time js.publish baseline (default 10000; 0 skips it)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="relay batch size (default 1000)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://... to bench PostgreSQL (a throwaway schema is created and dropped); "
        "default: a SQLite file in a temp dir",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.per_tx < 1 or args.baseline_events < 0 or args.batch_size < 1:
        parser.error("sizes must be positive")
    return args


class Timed:
    """Adds up the time spent in one of the relay's steps (wraps the instance's method only)."""

    def __init__(self, target: object, method: str) -> None:
        self.seconds = 0.0
        self.calls = 0
        original: Callable[..., Awaitable[Any]] | None = getattr(target, method, None)
        if original is None:
            return  # the relay changed shape: no split for this step

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        setattr(target, method, timed)


async def open_engine(args: argparse.Namespace, workdir: Path) -> tuple[AsyncEngine, str, str | None]:
    if not args.database_url:
        return make_engine(f"sqlite:///{workdir / 'outbox.db'}"), "sqlite", None
    backend = make_url(args.database_url).get_backend_name()
    if backend != "postgresql":
        return make_engine(args.database_url), backend, None
    # Never touch existing tables: everything lives in a schema of our own, dropped afterwards.
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(args.database_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        await admin.dispose()
    engine = make_engine(args.database_url, connect_args={"server_settings": {"search_path": schema}})
    return engine, backend, schema


async def drop_schema(url: str, schema: str) -> None:
    admin = make_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    engine, backend, pg_schema = await open_engine(args, workdir)
    store = EventStore(engine, EventStoreSchema(MetaData()))
    figures: dict[str, Any] = {
        "database": backend,
        "events": args.events,
        "per_tx": args.per_tx,
        "relay_batch_size": args.batch_size,
    }
    try:
        await store.create_tables()
        with local_nats_server(workdir) as server:
            async with jetstream(server.url) as (_nc, js, _errors):
                await ensure_stream(js, context_stream("registry", StreamSettings()))

                # (a) appends
                progress(f"(a) appending {args.events} events, {args.per_tx} per transaction ({backend})")
                watch = Stopwatch()
                n = 0
                while n < args.events:
                    async with store.transaction() as tx:
                        for _ in range(min(args.per_tx, args.events - n)):
                            n += 1
                            event, path = volunteer(n)
                            await tx.record(f"V{n:08d}", 0, [event], org_path=path, actor="bench")
                    if n % 10_000 < args.per_tx:
                        progress(f"  {n} appended, {rate(n, watch.seconds)} events/s")
                append_s = watch.seconds
                figures.update(append_seconds=round(append_s, 3), append_events_per_s=rate(n, append_s))
                progress(f"  {n} appended in {append_s:.2f}s: {figures['append_events_per_s']} events/s")

                # (b) the relay
                relay = OutboxRelay(store, js, "REGISTRY", RelaySettings(batch_size=args.batch_size))
                steps = {step: Timed(relay, f"_{step}") for step in ("unpublished", "publish", "mark_published")}
                progress(f"(b) relaying the outbox to REGISTRY, batches of {args.batch_size}")
                watch = Stopwatch()
                published = 0
                while (count := await relay.publish_pending()) > 0:
                    published += count
                relay_s = watch.seconds
                figures.update(publish_seconds=round(relay_s, 3), publish_events_per_s=rate(published, relay_s))
                for step, timed in steps.items():
                    if timed.calls:
                        figures[f"relay_{step}_seconds"] = round(timed.seconds, 3)
                progress(
                    f"  {published} published in {relay_s:.2f}s: {figures['publish_events_per_s']} events/s "
                    f"({', '.join(f'{s} {t.seconds:.2f}s' for s, t in steps.items() if t.calls)})"
                )
                stored = (await js.stream_info("REGISTRY")).state.messages
                depth = await store.outbox_depth()
                if stored != args.events or published != args.events or depth:
                    raise SystemExit(
                        f"relay published {published}, the stream holds {stored}, {depth} rows left "
                        f"unpublished; expected {args.events} in the stream and none left"
                    )

                # (c) the baseline: one awaited publish at a time
                if args.baseline_events:
                    await ensure_stream(js, stream_config("BASELINE", ["baseline.>"], StreamSettings()))
                    outbox = store.schema.outbox
                    async with engine.connect() as conn:
                        rows = (
                            await conn.execute(
                                select(outbox.c.event_id, outbox.c.subject, outbox.c.body)
                                .order_by(outbox.c.position)
                                .limit(args.baseline_events)
                            )
                        ).all()
                    progress(f"(c) baseline: {len(rows)} one-at-a-time awaited js.publish into BASELINE")
                    watch = Stopwatch()
                    for event_id, subject, body in rows:
                        await js.publish(
                            f"baseline.{subject}", body, headers={"Nats-Msg-Id": event_id}, stream="BASELINE"
                        )
                    baseline_s = watch.seconds
                    figures.update(
                        baseline_events=len(rows),
                        baseline_publish_seconds=round(baseline_s, 3),
                        baseline_publish_events_per_s=rate(len(rows), baseline_s),
                    )
                    figures["relay_vs_baseline_ratio"] = ratio(
                        figures["publish_events_per_s"], figures["baseline_publish_events_per_s"]
                    )
                    progress(f"  {len(rows)} in {baseline_s:.2f}s: {figures['baseline_publish_events_per_s']} events/s")
        return figures
    finally:
        await engine.dispose()
        if pg_schema:
            await drop_schema(args.database_url, pg_schema)


main = main_of(NAME, parse_args, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
