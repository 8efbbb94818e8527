"""Rebuild benchmark: reporting rebuilt from zero over a synthetic city's streams.

Writes --events of `bench/city_events.py`'s city into its own nats-server, reads every stream
once with each of two bare readers (a nats-py ordered push consumer, and the pipelined pull the
rebuild reads with; the faster is the ceiling), then rebuilds
reporting's figures from sequence 1 of every stream (Projector.rebuild, SQLite in a temp dir or
--database-url), its worker processes sharing out registry's stream and ranges of dispatch's and
points'. Prints events/s for both, their ratio, each rebuilding process's peak memory during the
rebuild and RSS as it went (goal: at least half the ceiling, under 300 MB whatever the length),
and checks the figures. `city_peak_rss_mb` is this process's peak before, while it wrote and read
the city (`peak_rss_mb`, last, is then the rebuild's again).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench._common import (
    Stopwatch,
    current_rss_mb,
    jetstream,
    local_nats_server,
    main_of,
    peak_rss_mb,
    progress,
    rate,
    ratio,
    reset_peak_rss,
)
from bench.city_events import plan, prepare_streams, publish_city
from bench.replay import Count, ceiling, read_all
from services.reporting.projection import Figures
from services.reporting.queries import figures_for
from shared.db import make_engine
from shared.replay import Projector, last_sequence

NAME = "rebuild"
STREAMS = ("REGISTRY", "DISPATCH", "POINTS")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="about how many events (default 1000000; try 3000000)"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="events per transaction (default 1000)")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in the temp dir")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1,
        help="rebuild worker processes (default: one per core)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 100_000
    return args


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    engine = make_engine(args.database_url or f"sqlite:///{workdir / 'reporting.db'}")
    with local_nats_server(workdir) as server:
        async with jetstream(server.url) as (nc, js, _errors):
            await prepare_streams(js)
            progress(f"writing a city of about {args.events} events")
            watch = Stopwatch()
            counts = await publish_city(nc, args.events)
            total = sum(counts.values())
            figures.update(events=total, publish_events_per_s=rate(total, watch.seconds))
            lasts = {stream: await last_sequence(js, stream) for stream in STREAMS}

        # The ceiling is the faster of two bare readers: nats-py's ordered push consumer, and
        # the pipelined pull the rebuild reads with, counting messages and nothing else.
        progress("ceiling: a bare ordered consumer over each stream")
        async with jetstream(server.url) as (_nc, js, _errors):
            watch, read = Stopwatch(), 0
            for stream, last in lasts.items():
                read += await ceiling(js, stream, last, args.batch_size, Count())
            figures["ordered_consumer_events_per_s"] = rate(read, watch.seconds)
        progress("ceiling: a bare pipelined pull over each stream")
        async with jetstream(server.url) as (nc, _js, _errors):
            watch, read = Stopwatch(), 0
            for stream, last in lasts.items():
                read += await read_all(nc, stream, last, args.batch_size, Count())
            figures["pipelined_pull_events_per_s"] = rate(read, watch.seconds)
        figures["ceiling_events_per_s"] = max(
            figures["ordered_consumer_events_per_s"] or 0, figures["pipelined_pull_events_per_s"] or 0
        )

        progress(f"rebuild of reporting's figures, batches of {args.batch_size}, {args.processes} process(es)")
        async with jetstream(server.url) as (nc, _js, _errors):
            projector = Projector(Figures(), engine, batch_size=args.batch_size, rebuild_processes=args.processes)
            await projector.setup()
            rss: list[float | None] = [current_rss_mb()]
            next_sample = time.monotonic() + 5

            def on_progress(stream: str, position: int, last: int) -> None:
                nonlocal next_sample
                if time.monotonic() >= next_sample:
                    next_sample += 5
                    rss.append(current_rss_mb())
                    progress(f"  {stream} {position}/{last}, RSS {rss[-1]} MB")

            figures["city_peak_rss_mb"] = peak_rss_mb()  # writing and reading the city
            reset_peak_rss()  # from here on, this process's peak while it rebuilds
            watch = Stopwatch()
            generation = await projector.rebuild(nc, progress=on_progress)
            seconds = watch.seconds
            rss.append(current_rss_mb())
            rebuild_peak = peak_rss_mb()
    figures.update(
        rebuild_seconds=round(seconds, 1),
        rebuild_events_per_s=rate(total, seconds),
        rebuild_to_ceiling=ratio(rate(total, seconds), figures["ceiling_events_per_s"]),
        rss_mb_samples=rss[:: max(1, len(rss) // 12)],
        processes=args.processes,
        rebuild_peak_rss_mb=rebuild_peak,
        worker_peak_rss_mb=[round(peak, 1) for peak in projector.worker_peak_rss_mb],
    )
    city = await figures_for(engine, projector.projection, generation, "370300")
    expected = plan(args.events)["volunteers"]
    await engine.dispose()
    if city["figures"].get("volunteers.registered") != expected:
        raise SystemExit(
            f"rebuilt figures are wrong: {city['figures'].get('volunteers.registered')} volunteers, {expected} written"
        )
    figures["figures_check"] = "ok"
    return figures


main = main_of(NAME, parse_args, run)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
