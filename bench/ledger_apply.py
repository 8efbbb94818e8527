"""Ledger benchmark: points posting 1,000,000 hour-confirmed events from dispatch's stream.

Starts its own nats-server, opens --volunteers points accounts in a SQLite store (or
--database-url), publishes --events ServiceHoursConfirmed into DISPATCH (pipelined, with
Nats-Msg-Id), then runs the points service's own ledger follower (StreamFollower reading the
stream, posting each batch in one transaction) until its checkpoint reaches the last event.
Prints events/s, CPU per event, and memory: peak RSS and RSS sampled as the posting goes (flat
is the goal), and checks the books afterwards (every event credited once, the trial balance zero).
Prints its figures last as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench._common import Stopwatch, current_rss_mb, jetstream, local_nats_server, main_of, progress, rate
from services.points import store
from services.points.books import Books, RuleCache
from services.points.subscribers import LEDGER_BATCH_POSTGRESQL, LEDGER_BATCH_SQLITE, ledger_follower
from shared.bus import StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.db import make_engine
from shared.events.dispatch import ServiceHoursConfirmed
from shared.events.points import PointsAccountOpened
from shared.eventstore import EventStore
from shared.replay import last_sequence

NAME = "ledger_apply"
DISTRICT = "370303"
FIELDS = ("smart_help_for_elderly", "legal_aid", "civilised_traffic", "environment")
GROUPS = ("elderly", "children", "people_in_difficulty", "psychological_support", "public_needs")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="hour-confirmed events (default 1000000)")
    parser.add_argument(
        "--volunteers", type=int, default=50_000, help="accounts the events spread over (default 50000)"
    )
    batch_help = (
        f"events per transaction (default the service's: {LEDGER_BATCH_SQLITE} on SQLite, "
        f"{LEDGER_BATCH_POSTGRESQL} on PostgreSQL)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help=batch_help)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in the temp dir")
    parser.add_argument("--quick", action="store_true", help="50,000 events over 5,000 volunteers")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.volunteers = 50_000, 5_000
    return args


def number(n: int) -> str:
    return f"V{n:08d}"


async def open_accounts(events: EventStore, volunteers: int) -> None:
    path = (DISTRICT, f"{DISTRICT}001000", f"{DISTRICT}001001")
    for start in range(1, volunteers + 1, 5000):
        async with events.transaction() as tx:
            books = Books(tx)
            for n in range(start, min(start + 5000, volunteers + 1)):
                books.open(number(n), DISTRICT, path)
                books.record(number(n), [PointsAccountOpened(volunteer_number=number(n))], account=number(n))
            await books.flush()


async def publish(js: Any, count: int, volunteers: int) -> None:
    """Each event a record of its own, 1–4 hours on one of the last 400 days."""
    rng = random.Random(7)
    today = date(2026, 11, 23)
    at = datetime(2026, 11, 23, 4, tzinfo=UTC)
    pending: list[asyncio.Future[Any]] = []
    for n in range(1, count + 1):
        hours = Decimal(rng.randint(2, 8)) / 2
        event = ServiceHoursConfirmed(
            record_id=f"R{n:010d}",
            volunteer_number=number(rng.randint(1, volunteers)),
            activity_id="A00000001",
            shift_id="SH00000001",
            site_id="S-370303001001",
            field=FIELDS[n % 4],
            group_served=GROUPS[n % 5],
            service_date=today - timedelta(days=rng.randint(0, 400)),
            source="attendance",
            minutes=int(hours * 60),
            hours=hours,
            at=at,
        )
        envelope = catalog.envelope(
            event, aggregate_id=event.record_id, aggregate_version=2, org_path=(DISTRICT,), actor="organiser"
        )
        future = await js.publish_async(
            catalog.subject_of(envelope),
            envelope.to_json(),
            headers={"Nats-Msg-Id": str(envelope.event_id)},
            stream="DISPATCH",
        )
        pending.append(future)
        if len(pending) >= 4000:
            await asyncio.gather(*pending)
            pending.clear()
        if n % 200_000 == 0:
            progress(f"  published {n}")
    await asyncio.gather(*pending)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    url = args.database_url or f"sqlite:///{workdir / 'points.db'}"
    events = EventStore(make_engine(url), store.schema)
    await events.create_tables()
    figures: dict[str, Any] = {"events": args.events, "volunteers": args.volunteers, "database": url.split(":")[0]}
    with local_nats_server(workdir) as server:
        async with jetstream(server.url) as (nc, js, _errors):
            await ensure_stream(js, context_stream("dispatch", StreamSettings()))
            await ensure_stream(js, dead_letter_stream(StreamSettings()))
            progress(f"opening {args.volunteers} accounts")
            await open_accounts(events, args.volunteers)
            progress(f"publishing {args.events} ServiceHoursConfirmed into DISPATCH")
            watch = Stopwatch()
            await publish(js, args.events, args.volunteers)
            figures["publish_events_per_s"] = rate(args.events, watch.seconds)
            last = await last_sequence(js, "DISPATCH")

            follower = ledger_follower(events, RuleCache(), batch_size=args.batch_size)
            progress("posting")
            rss: list[float | None] = [current_rss_mb()]
            watch, cpu, loop_cpu = Stopwatch(), time.process_time(), time.thread_time()
            task = asyncio.ensure_future(follower.follow(nc, "dispatch"))
            next_report = time.monotonic() + 5
            while await follower.checkpoint("DISPATCH") < last:
                await asyncio.sleep(0.25)
                if task.done():
                    task.result()
                if time.monotonic() >= next_report:
                    next_report += 5
                    rss.append(current_rss_mb())
                    progress(
                        f"  {follower.applied_total} posted, {rate(follower.applied_total, watch.seconds)}/s, RSS {rss[-1]} MB"
                    )
            seconds, cpu, loop_cpu = watch.seconds, time.process_time() - cpu, time.thread_time() - loop_cpu
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            rss.append(current_rss_mb())
    figures["post_seconds"] = round(seconds, 1)
    figures["events_per_s"] = rate(args.events, seconds)
    # This process's CPU (every thread: the loop and SQLite's) per event: steadier than events/s
    # on a machine others share.
    figures["cpu_us_per_event"] = round(cpu / args.events * 1e6, 1)
    # Of which the event loop's thread (reading, deciding, encoding) and the rest (SQLite's
    # threads): the two overlap, so the larger bounds the rate.
    figures["loop_cpu_us_per_event"] = round(loop_cpu / args.events * 1e6, 1)
    figures["store_cpu_us_per_event"] = round((cpu - loop_cpu) / args.events * 1e6, 1)
    # Where the follower's time went, µs an event: decoding overlaps the previous batch's
    # applying; applying (reading, deciding) and committing (the writes and the COMMIT) add up
    # to the posting's time.
    for phase, spent in follower.seconds.items():
        figures[f"{phase}_us_per_event"] = round(spent / args.events * 1e6, 1)
    # RSS as the posting went, at most a dozen samples (every 5 s, thinned): flat is the goal.
    step = max(1, len(rss) // 12)
    figures["rss_mb_samples"] = rss[::step] + ([rss[-1]] if (len(rss) - 1) % step else [])
    async with events.engine.connect() as conn:
        credited = await conn.scalar(
            select(func.count())
            .select_from(store.schema.events)
            .where(store.schema.events.c.event_type == "ServiceCredited")
        )
        others = await conn.scalar(
            select(func.coalesce(func.sum(store.ledger_accounts.c.balance), 0)).where(
                store.ledger_accounts.c.unit == "points"
            )
        )
        volunteers = await conn.scalar(select(func.coalesce(func.sum(store.accounts.c.balance), 0)))
    figures["credited_once_each"] = credited == args.events
    figures["books_balance"] = others + volunteers == 0
    await events.engine.dispose()
    if credited != args.events or others + volunteers:
        raise SystemExit(
            f"ledger check failed: {credited} credited of {args.events}, trial balance {others + volunteers}"
        )
    return figures


main = main_of(NAME, parse_args, run)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
