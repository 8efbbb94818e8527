"""`python -m services.reporting` serves; `python -m services.reporting rebuild` rebuilds."""

from __future__ import annotations

import asyncio
import sys
import time

from services.reporting.app import create_app


def rebuild(argv: list[str]) -> None:
    import argparse

    from nats import connect
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from services.reporting.app import build
    from shared.migrations import migrations_of
    from shared.settings import ServiceSettings

    parser = argparse.ArgumentParser(
        prog="python -m services.reporting rebuild", description="Rebuild every figure from the streams."
    )
    parser.add_argument("--database-url")
    parser.add_argument("--nats-url")
    parser.add_argument("--processes", type=int, help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    processes = args.processes
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "processes"}
    settings = ServiceSettings(**overrides).for_service("reporting")

    async def run() -> None:
        runtime, projector, _followers = build(settings)
        if processes:
            projector.rebuild_processes = processes
        await migrations_of("reporting").upgrade(runtime.engine)
        await projector.setup()
        nc = await connect(**settings.nats_connect_options())
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]} events/s"),
            TimeRemainingColumn(),
        ) as bar:
            tasks: dict[str, int] = {}

            positions: dict[str, int] = {}

            def progress(stream: str, position: int, last: int) -> None:
                if stream not in tasks:
                    tasks[stream] = bar.add_task(stream, total=last, rate="-")
                positions[stream] = position  # streams may be read side by side, in processes
                rate = int(sum(positions.values()) / max(time.monotonic() - started, 1e-6))
                bar.update(tasks[stream], completed=position, rate=f"{rate:,}")

            generation = await projector.rebuild(nc, progress=progress)
        await nc.close()
        await runtime.engine.dispose()
        seconds = time.monotonic() - started
        print(f"rebuilt figures as generation {generation}: {projector.applied_total} events in {seconds:.1f}s")

    asyncio.run(run())


if __name__ == "__main__":
    if sys.argv[1:2] == ["rebuild"]:
        rebuild(sys.argv[2:])
    else:
        from shared.serve import serve

        serve("reporting", create_app)
