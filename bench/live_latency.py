"""Live latency benchmark: how soon a new event shows in reporting's figures while events arrive.

Starts its own nats-server and a reporting projector following every stream (as the service
does, SQLite in a temp dir), then publishes volunteer registrations at --rate events/s for
--seconds. For each event, the latency is from its publish to the moment the projector's
checkpoint, committed with the figures, covers it (polled every 10 ms). Prints p50/p99/max.
Goal: p99 under 1 s at 500 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench._common import jetstream, local_nats_server, main_of, progress
from bench.city_events import prepare_streams
from services.reporting.projection import Figures
from shared.catalog import catalog
from shared.db import make_engine
from shared.envelope import utcnow
from shared.events.registry import OrgUnitCreated, VolunteerRegistered
from shared.replay import Projector

NAME = "live_latency"
PATH = ("370303", "370303001000", "370303001001")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="events per second (default 500)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long (default 30)")
    return parser.parse_args(argv)


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{workdir / 'reporting.db'}")
    projector = Projector(Figures(), engine)
    await projector.setup()
    published: dict[int, float] = {}  # REGISTRY sequence → when its publish was acknowledged
    latencies: list[float] = []
    with local_nats_server(workdir) as server:
        async with jetstream(server.url) as (nc, js, _errors):
            await prepare_streams(js)
            district = OrgUnitCreated(code="370303", parent_code=None, level="district", name="张店区", population=1, party_members=1)
            envelope = catalog.envelope(district, aggregate_id="370303", aggregate_version=1, org_path=("370303",), actor="bench")
            await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream="REGISTRY")
            followers = [asyncio.create_task(projector.follow(nc, context)) for context in Figures.contexts]
            generation = await projector.active_generation()

            async def watch() -> None:
                seen = 0
                while True:
                    done = await projector.checkpoint(generation, "REGISTRY")
                    now = time.monotonic()
                    for sequence in range(seen + 1, done + 1):
                        if sequence in published:
                            latencies.append(now - published.pop(sequence))
                    seen = max(seen, done)
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            total = int(args.rate * args.seconds)
            progress(f"publishing {total} registrations at {args.rate}/s")
            started = time.monotonic()
            for n in range(1, total + 1):
                due = started + n / args.rate
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                event = VolunteerRegistered(
                    volunteer_number=f"V{n:08d}", community_code=PATH[-1], age_band="35_59", gender="female",
                    political_status="masses", skills=[], consented_at=utcnow(),
                )  # fmt: skip
                envelope = catalog.envelope(event, aggregate_id=event.volunteer_number, aggregate_version=1, org_path=PATH, actor="bench")
                ack = await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream="REGISTRY")
                published[ack.seq] = time.monotonic()
            deadline = time.monotonic() + 30
            while published and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for task in (watcher, *followers):
                task.cancel()
            await asyncio.gather(watcher, *followers, return_exceptions=True)
    await engine.dispose()
    if published:
        raise SystemExit(f"{len(published)} events never showed in the figures")
    figures = {
        "rate_per_s": args.rate,
        "events": len(latencies),
        "p50_ms": round(quantile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(quantile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }
    figures["goal_p99_under_1s"] = figures["p99_ms"] < 1000
    return figures


main = main_of(NAME, parse_args, run)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
