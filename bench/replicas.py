"""Replicas benchmark: points and reporting draining events with 1 and with 2 replicas on PostgreSQL.

Starts its own nats-server; each replica is a process of its own running the service's app
(`--replica` is that process's mode), every replica of a service on one throwaway PostgreSQL
database (made and dropped through the server at --admin-url). For each replica count:
- points: --volunteers registrations (its registry reactor: a durable consumer the replicas
  share), then --records confirmed hours (its ledger: an in-order follower, one replica leads it);
- reporting: a city of --events events in the three streams, folded by the projection's
  followers (one per stream, the streams shared out among the replicas).
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
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import make_url

from bench._common import Stopwatch, jetstream, local_nats_server, main_of, progress, rate, ratio
from bench.city_events import publish_city
from services.points import store as points_store
from shared.bus import CONTEXTS, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.db import make_engine, reading
from shared.events.dispatch import ServiceHoursConfirmed
from shared.events.registry import VolunteerRegistered
from shared.replay import last_sequence, projector_tables
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
            did["ledger_events"] = state.ledger.applied_total
        else:
            did["folded"] = state.projector.applied_total
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


async def publish_all(js: JetStreamContext, envelopes: Any, stream: str) -> None:
    pending: list[asyncio.Future[Any]] = []
    for envelope in envelopes:
        headers = {"Nats-Msg-Id": str(envelope.event_id)}
        pending.append(
            await js.publish_async(catalog.subject_of(envelope), envelope.to_json(), headers=headers, stream=stream)
        )
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
    """Registrations, then confirmations (a volunteer's hours wait for the account otherwise)."""
    figures: dict[str, Any] = {}
    async with throwaway_database(args.admin_url) as url:
        replicas = Replicas("points", count, url, nats_url)
        engine = make_engine(url)
        try:
            await replicas.start()
            accounts = select(func.count()).select_from(points_store.accounts)
            credited = (
                select(func.count())
                .select_from(points_store.schema.events)
                .where(points_store.schema.events.c.event_type == "ServiceCredited")
            )
            watch = Stopwatch()
            await publish_all(js, registrations(args.volunteers), "REGISTRY")
            await until(lambda: _reached(engine, accounts, args.volunteers), "points opening accounts")
            figures["registrations_per_s"] = rate(args.volunteers, watch.seconds)
            watch = Stopwatch()
            await publish_all(js, confirmations(args.records, args.volunteers), "DISPATCH")
            await until(lambda: _reached(engine, credited, args.records), "points posting hours")
            figures["postings_per_s"] = rate(args.records, watch.seconds)
            figures["replicas_did"] = await replicas.stop()
        finally:
            await replicas.kill()
            await engine.dispose()
    return figures


async def _reached(engine: Any, statement: Any, target: int) -> bool:
    return await count_rows(engine, statement) >= target


async def run_reporting(args: argparse.Namespace, count: int, nats_url: str, js: JetStreamContext) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with throwaway_database(args.admin_url) as url:
        replicas = Replicas("reporting", count, url, nats_url)
        engine = make_engine(url)
        _, checkpoints = projector_tables(MetaData())
        try:
            await replicas.start()
            watch = Stopwatch()
            published = sum((await publish_city(js, args.events)).values())
            last = {context.upper(): await last_sequence(js, context.upper()) for context in CONTEXTS}

            async def folded() -> bool:
                async with reading(engine) as conn:
                    rows = await conn.execute(
                        select(checkpoints.c.stream, func.max(checkpoints.c.sequence)).group_by(checkpoints.c.stream)
                    )
                    done = dict(rows.all())
                return all(done.get(stream, 0) >= sequence for stream, sequence in last.items())

            await until(folded, "reporting folding the city")
            figures["events_per_s"] = rate(published, watch.seconds)
            figures["replicas_did"] = await replicas.stop()
        finally:
            await replicas.kill()
            await engine.dispose()
    return figures


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
