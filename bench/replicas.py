"""Replicas benchmark: points and reporting draining events with 1 and with 2 replicas on PostgreSQL.

Starts its own nats-server; each replica is a process of its own running the service's app
(`--replica` is that process's mode), every replica of a service on one throwaway PostgreSQL
database (made and dropped through the server at --admin-url). For each replica count:
- points: --volunteers registrations (its registry reactor: a durable consumer the replicas
  share), then --records confirmed hours (its ledger: in-order followers, a partition of the
  volunteers each, shared out among the replicas), encoded before the clock starts;
- reporting: a city of --events events in the three streams and 8 districts (bench/city_events.py),
  folded by the projection's partitions (shares of the districts of dispatch and points, registry
  whole; shared out among the replicas). The messages are encoded before the clock starts.
The clock runs from the first publish until the service has applied the last event. Prints the
events/s of each, the ratio of 2 replicas to 1, and what each replica did, as one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.js import JetStreamContext
from sqlalchemy import MetaData, func, select, text
from sqlalchemy.engine import make_url

from bench._common import Stopwatch, jetstream, local_nats_server, main_of, progress, rate, ratio
from bench.city_events import city_messages, publish_messages
from services.points import store as points_store
from shared.bus import CONTEXTS, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.db import make_engine, reading
from shared.events.dispatch import ServiceHoursConfirmed
from shared.events.registry import VolunteerRegistered
from shared.replay import checkpoint_key, district_counts, last_sequence, projector_tables
from shared.settings import ServiceSettings

NAME = "replicas"
PATH = ("370303", "370303001000", "370303001001")
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=10_000, help="registrations points drains (default 10000)")
    parser.add_argument("--records", type=int, default=100_000, help="confirmed hours points posts (default 100000)")
    parser.add_argument("--events", type=int, default=200_000, help="city events reporting folds (default 200000)")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BEACON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--quick", action="store_true", help="2,000 volunteers, 20,000 records, 40,000 city events")
    parser.add_argument("--replica", choices=("points", "reporting"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.volunteers, args.records, args.events = 2_000, 20_000, 40_000
    return args


# -- a replica (a process of its own) --------------------------------------------------------------


async def serve_replica(service: str, database_url: str, nats_url: str) -> None:
    """Run the service's app until SIGTERM, then print what this replica did."""
    if service == "points":
        from services.points.app import create_app
    else:
        from services.reporting.app import create_app
    from shared.subscriber import subscriptions

    app = create_app(ServiceSettings(nats_url=nats_url, database_url=database_url))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app.router.lifespan_context(app):
        print("ready", flush=True)
        await stop.wait()
        state = app.state
        did: dict[str, Any] = {"leading": sorted(state.followers.leading)}
        if service == "points":
            did["registrations"] = sum(s.reactor.handled for s in subscriptions(state.runtime.broker))
            did["ledger_events"] = sum(ledger.applied_total for ledger in state.ledgers)
            did["ledger_partitions"] = {ledger.name: ledger.applied_total for ledger in state.ledgers}
            # Each replica's relay publishes the outbox rows it finds unpublished: the sum over the
            # replicas beyond the events stored is rows published twice (JetStream drops them).
            did["relay_published"] = state.runtime.relay.published_total
        else:
            did["folded"] = state.projector.applied_total
            usage = resource.getrusage(resource.RUSAGE_SELF)  # this replica's CPU, start-up included
            did["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    print(json.dumps(did), flush=True)


class Replicas:
    """A service's replica processes: started, waited for, stopped with what each did."""

    def __init__(self, service: str, count: int, database_url: str, nats_url: str) -> None:
        self.service, self.count = service, count
        self.database_url, self.nats_url = database_url, nats_url
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        command = ["-m", f"bench.{NAME}", "--replica", self.service]
        command += ["--database-url", self.database_url, "--nats-url", self.nats_url]
        for _ in range(self.count):
            process = await asyncio.create_subprocess_exec(
                sys.executable, *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE
            )
            self.processes.append(process)
            # One at a time: migrations, then leadership, settle before the next comes.
            line = await asyncio.wait_for(process.stdout.readline(), 120)  # type: ignore[union-attr]
            if line.strip() != b"ready":
                raise SystemExit(f"a {self.service} replica did not start (exit {process.returncode})")
        await asyncio.sleep(3)  # the replicas share the in-order followers out (a tick or two)

    async def stop(self) -> list[dict[str, Any]]:
        did = []
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            out, _ = await asyncio.wait_for(process.communicate(), 60)
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            did.append(json.loads(lines[-1]) if lines else {"exit": process.returncode})
        self.processes.clear()
        return did

    async def kill(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- the benchmark -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def throwaway_database(admin_url: str) -> AsyncIterator[str]:
    plain = make_url(admin_url).set(drivername="postgresql")
    name = f"beacon_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield plain.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def until(probe: Callable[[], Awaitable[bool]], what: str, stall_seconds: float = 120.0) -> None:
    """Poll `probe` until it holds; a service that stops moving fails the benchmark, not hangs it."""
    watch = Stopwatch()
    while not await probe():
        if watch.seconds > stall_seconds * 20:
            raise SystemExit(f"{what}: not done after {watch.seconds:.0f}s")
        await asyncio.sleep(0.1)


def encoded(envelopes: Any) -> list[tuple[str, bytes, dict[str, str]]]:
    """Subject, body and headers of each, as an outbox row holds them: built before the clock."""
    return [
        (catalog.subject_of(envelope), envelope.to_json(), {"Nats-Msg-Id": str(envelope.event_id)})
        for envelope in envelopes
    ]


async def publish_all(js: JetStreamContext, messages: list[tuple[str, bytes, dict[str, str]]], stream: str) -> None:
    pending: list[asyncio.Future[Any]] = []
    for subject, body, headers in messages:
        pending.append(await js.publish_async(subject, body, headers=headers, stream=stream))
        if len(pending) >= 4000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


def registrations(volunteers: int) -> Any:
    at = datetime(2026, 11, 1, 2, tzinfo=UTC)
    for n in range(1, volunteers + 1):
        event = VolunteerRegistered(
            volunteer_number=f"V{n:08d}", community_code=PATH[-1], age_band="35_59", gender="female",
            political_status="masses", skills=["first_aid"], consented_at=at,
        )  # fmt: skip
        yield catalog.envelope(
            event, aggregate_id=event.volunteer_number, aggregate_version=1, org_path=PATH, actor="bench"
        )


def confirmations(records: int, volunteers: int) -> Any:
    """Each a record of its own, 1–4 hours on one of the last 400 days (caps apply: as in life)."""
    rng = random.Random(7)
    today, at = date(2026, 11, 23), datetime(2026, 11, 23, 4, tzinfo=UTC)
    for n in range(records):
        hours = Decimal(rng.randint(2, 8)) / 2
        event = ServiceHoursConfirmed(
            record_id=f"R{n:010d}", volunteer_number=f"V{1 + rng.randrange(volunteers):08d}", activity_id="A00000001",
            shift_id="SH00000001", site_id="ST-370303001001", field="civilised_traffic", group_served="elderly",
            service_date=today - timedelta(days=rng.randint(0, 400)), source="attendance", minutes=int(hours * 60),
            hours=hours, at=at,
        )  # fmt: skip
        yield catalog.envelope(event, aggregate_id=event.record_id, aggregate_version=2, org_path=PATH, actor="bench")


async def count_rows(engine: Any, statement: Any) -> int:
    async with reading(engine) as conn:
        return await conn.scalar(statement) or 0


async def run_points(args: argparse.Namespace, count: int, nats_url: str, js: JetStreamContext) -> dict[str, Any]:
    """Registrations, then confirmations (a volunteer's hours wait for the account otherwise).
    The ledger's partitions (by volunteer, BEACON_LEDGER_PARTITIONS) are shared out among the
    replicas, with the orders follower: its stream is empty here."""
    from services.points.app import PointsSettings

    partitions = PointsSettings().ledger_partitions
    figures: dict[str, Any] = {"ledger_partitions": partitions}
    async with throwaway_database(args.admin_url) as url:
        replicas = Replicas("points", count, url, nats_url)
        engine = make_engine(url)
        try:
            await replicas.start()
            await _followers_shared_out(engine, partitions + 1, count)
            accounts = select(func.count()).select_from(points_store.accounts)
            credited = (
                select(func.count())
                .select_from(points_store.schema.events)
                .where(points_store.schema.events.c.event_type == "ServiceCredited")
            )
            # Encoded before the clock starts, as reporting's (the bench's envelopes are not points' work).
            registered = encoded(registrations(args.volunteers))
            confirmed = encoded(confirmations(args.records, args.volunteers))
            watch = Stopwatch()
            await publish_all(js, registered, "REGISTRY")
            await until(lambda: _reached(engine, accounts, args.volunteers), "points opening accounts")
            figures["registrations_per_s"] = rate(args.volunteers, watch.seconds)
            watch = Stopwatch()
            await publish_all(js, confirmed, "DISPATCH")
            await until(lambda: _reached(engine, credited, args.records), "points posting hours")
            figures["postings_per_s"] = rate(args.records, watch.seconds)
            figures["replicas_did"] = await replicas.stop()
        finally:
            await replicas.kill()
            await engine.dispose()
    return figures


async def _reached(engine: Any, statement: Any, target: int) -> bool:
    return await count_rows(engine, statement) >= target


async def _followers_shared_out(engine: Any, followers: int, replicas: int) -> None:
    """Until the replicas lead their shares of the followers (shared.leadership: a replica starting
    alone leads them all and hands them over a tick at a time), by their advisory locks: each
    holds one for its membership and one for each follower it leads. Goes on after 20 s anyway."""
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY pid"
    )
    share = -(-followers // replicas)
    watch = Stopwatch()
    while watch.seconds < 20:
        async with reading(engine) as conn:
            counts = (await conn.execute(held)).scalars().all()
        if sum(counts) == followers + replicas and max(counts, default=0) <= share + 1:
            return
        await asyncio.sleep(0.2)
    progress(f"  the followers are not shared out as expected: {counts} locks by replica")


async def run_reporting(args: argparse.Namespace, count: int, nats_url: str, js: JetStreamContext) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # Encoded before the clock starts: the services' outboxes publish stored JSON, and a bench
    # that builds envelopes while it publishes measures its own publishing.
    messages = list(city_messages(args.events))
    async with throwaway_database(args.admin_url) as url:
        replicas = Replicas("reporting", count, url, nats_url)
        engine = make_engine(url)
        _, checkpoints = projector_tables(MetaData())
        publisher = await nats.connect(nats_url)
        try:
            await replicas.start()
            watch = Stopwatch()
            published = sum((await publish_messages(publisher, messages)).values())
            published_seconds = watch.seconds
            targets = await _reporting_targets(js)

            async def folded() -> bool:
                async with reading(engine) as conn:
                    done = dict((await conn.execute(select(checkpoints.c.stream, checkpoints.c.sequence))).all())
                return all(done.get(key, 0) >= sequence for key, sequence in targets.items())

            await until(folded, "reporting folding the city")
            figures["events_per_s"] = rate(published, watch.seconds)
            figures["publish_events_per_s"] = rate(published, published_seconds)
            figures["replicas_did"] = await replicas.stop()
        finally:
            await replicas.kill()
            await engine.dispose()
            await publisher.close()
    return figures


async def _reporting_targets(js: JetStreamContext) -> dict[str, int]:
    """The checkpoint each of reporting's followers reaches once every event is applied: the
    stream's last sequence for registry (followed whole), each district's last message for the
    streams split by district (see services/reporting/projection.py)."""
    from services.reporting.projection import Figures

    targets: dict[str, int] = {}
    for context in Figures.contexts:
        stream = context.upper()
        if context not in Figures.partitioned:
            targets[checkpoint_key(stream)] = await last_sequence(js, stream)
            continue
        for district in await district_counts(js, stream):
            last = await js.get_last_msg(stream, f"{context}.{district}.>")
            targets[checkpoint_key(stream, district)] = last.seq
    return targets


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "volunteers": args.volunteers, "records": args.records, "city_events": args.events, "cores": os.cpu_count(),
    }  # fmt: skip
    for service in ("points", "reporting"):
        for count in (1, 2):
            progress(f"{service}, {count} replica(s)")
            # A server of its own each time: the streams refuse purges, and each run drains its own.
            with local_nats_server(workdir / f"{service}-{count}") as server:
                async with jetstream(server.url) as (_nc, js, _errors):
                    for context in CONTEXTS:
                        await ensure_stream(js, context_stream(context, StreamSettings()))
                    await ensure_stream(js, dead_letter_stream(StreamSettings()))
                    if service == "points":
                        result = await run_points(args, count, server.url, js)
                    else:
                        result = await run_reporting(args, count, server.url, js)
            figures[f"{service}_{count}"] = result
            progress(f"  {result}")
    for key, service, figure in (
        ("points_registrations_ratio", "points", "registrations_per_s"),
        ("points_postings_ratio", "points", "postings_per_s"),
        ("reporting_ratio", "reporting", "events_per_s"),
    ):
        figures[key] = ratio(figures[f"{service}_2"][figure], figures[f"{service}_1"][figure])
    return figures


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.replica:
        asyncio.run(serve_replica(args.replica, args.database_url, args.nats_url))
        return 0
    return main_of(NAME, parse_args, run)(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
