"""`python -m services.registry import-volunteers FILE`: bulk import from a CSV file, with a
progress bar, straight into the registry's store (no running service needed).

The events it records wait in the outbox; the registry service's relay publishes them when it
runs (it looks for unpublished rows every second).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

import shared.events  # noqa: F401  (registers the catalog)
from services.registry import store
from services.registry.app import RegistrySettings, vault_keys
from services.registry.handlers import Registry
from services.registry.importer import ImportReport, import_volunteers
from services.registry.vault import Vault
from shared.db import make_engine
from shared.errors import Refused
from shared.eventstore import EventStore
from shared.web import Actor

SHOWN_PROBLEMS = 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry import-volunteers",
        description="Import volunteers from a CSV file as the provincial platform exports it (UTF-8 or GB18030). "
        "Safe to run again: volunteers already registered are skipped.",
    )
    parser.add_argument("file", type=Path, help="the CSV file; line 1 is the header")
    parser.add_argument("--database-url", help="sqlite:///… or postgresql://… (BEACON_DATABASE_URL)")
    parser.add_argument("--report", type=Path, help="write every refused or skipped row to this CSV file")
    parser.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who the events name as the actor")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
    return parser.parse_args(argv)


def summary(report: ImportReport) -> str:
    rate = report.rows / report.seconds if report.seconds > 0 else 0
    return (
        f"{report.rows} rows read in {report.seconds:.1f}s ({rate:,.0f} rows/s, {report.encoding}): "
        f"{report.imported} imported, {report.skipped} skipped (already registered), {report.refused} refused"
    )


async def run(args: argparse.Namespace, console: Console) -> int:
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = RegistrySettings(**overrides).for_service("registry")
    assert isinstance(settings, RegistrySettings)
    engine = make_engine(settings.database_url)
    registry = Registry(EventStore(engine, store.schema), Vault(vault_keys(settings)))
    report_file = args.report.open("w", encoding="utf-8-sig", newline="") if args.report else None
    latest: list[ImportReport] = []  # how far it got, should the database fail half-way
    try:
        await registry.events.create_tables()
        size = args.file.stat().st_size
        with args.file.open("rb") as file, Progress(
            TextColumn("importing"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rows]} rows, {task.fields[rate]} rows/s"),
            TimeRemainingColumn(), console=console,
        ) as bar:
            task = bar.add_task("import", total=size, rows=0, rate="-")

            def advance(report: ImportReport) -> None:
                latest[:] = [report]
                rate = f"{report.rows / report.seconds:,.0f}" if report.seconds > 0 else "-"
                bar.update(task, completed=report.bytes_read, rows=report.rows, rate=rate)

            report = await import_volunteers(
                registry, Actor(args.actor), iter(lambda: file.read(64 * 1024), b""), today=date.today(),
                batch_size=args.batch_size, problems_to=report_file, on_batch=advance,
            )
            bar.update(task, completed=size)
    except Refused as refusal:
        console.print(f"[red]refused[/red]: {refusal.message}")
        return 2
    except (SQLAlchemyError, OSError) as error:
        done = f"{latest[0].rows} rows read, {latest[0].imported} imported" if latest else "nothing imported"
        console.print(f"[red]failed[/red] ({done}; running the file again carries on): {error!r}")
        return 1
    finally:
        if report_file is not None:
            report_file.close()
        await engine.dispose()
    console.print(summary(report), soft_wrap=True, markup=False, highlight=False)
    for problem in report.problems[:SHOWN_PROBLEMS]:
        console.print(f"  line {problem.line}: {problem.outcome}: {problem.reason}", soft_wrap=True, markup=False, highlight=False)
    more = report.skipped + report.refused - min(len(report.problems), SHOWN_PROBLEMS)
    if more > 0:
        console.print(f"  … and {more} more" + (f": all of them in {args.report}" if args.report else " (--report FILE lists them all)"))
    if report.stopped:
        console.print(f"[red]stopped[/red] before the end of the file: {report.stopped}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return 2
    return asyncio.run(run(args, Console()))
