"""Registry's commands, straight into its store (no running service needed):

- `import-volunteers FILE`: bulk import from a CSV file, with a progress bar;
- `create-admin --username NAME`: a city admin account, without a token (a fresh install's first);
- `token-keys --private FILE --public FILE`: the Ed25519 key pair that access tokens are signed with.

The events they record wait in the outbox; the registry service's relay publishes them when it
runs (it looks for unpublished rows every second).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

import shared.events  # noqa: F401  (registers the catalog)
from services.registry import store
from services.registry.app import RegistrySettings, vault_keys
from services.registry.handlers import Registry
from services.registry.handlers.accounts import open_first_admin
from services.registry.importer import ImportReport, import_volunteers
from services.registry.vault import Vault
from shared import auth
from shared.auth import Actor
from shared.citytime import city_today
from shared.db import make_engine
from shared.devkeys import load_or_make_key_pair
from shared.envelope import utcnow
from shared.errors import Conflict, Refused
from shared.eventstore import EventStore
from shared.migrations import migrations_of

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
        await migrations_of("registry").upgrade(engine)
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
                registry, Actor(args.actor), iter(lambda: file.read(64 * 1024), b""), today=city_today(),
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


def _read_password(password_file: Path | None) -> str:
    """The first line of the file; else a line of standard input (asked for twice at a terminal)."""
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("the same again: ") != password:
        raise ValueError("the two passwords differ")
    return password


async def _create_admin(args: argparse.Namespace, password: str) -> int:
    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = RegistrySettings(**overrides).for_service("registry")
    assert isinstance(settings, RegistrySettings)
    engine = make_engine(settings.database_url)
    registry = Registry(EventStore(engine, store.schema), Vault(vault_keys(settings)))
    try:
        await migrations_of("registry").upgrade(engine)
        account_id = await open_first_admin(
            registry, auth.Actor(args.actor), username=args.username, password=password, city=args.city, now=utcnow()
        )
    except Conflict as refusal:
        if args.if_missing and refusal.field == "username":
            print("an account with that username exists already: nothing changed")
            return 0
        print(f"refused: {refusal.message}", file=sys.stderr)
        return 2
    except Refused as refusal:
        print(f"refused: {refusal.message}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    print(f"city admin account {account_id} opened: sign in at POST /auth/token")
    return 0


def create_admin(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry create-admin",
        description="Open a city admin account without a token: the first of a fresh install, or another one "
        "when no admin can sign in. The password is the first line of --password-file, or else a line of "
        "standard input. The username and password go into registry's store only, never into an event.",
    )
    parser.add_argument("--username", required=True, help="the login name (or phone number) to sign in with")
    parser.add_argument("--password-file", type=Path, help="a file whose first line is the password")
    parser.add_argument("--city", help="the city's division code; needed while the org tree has no city yet")
    parser.add_argument("--database-url", help="sqlite:///… or postgresql://… (BEACON_DATABASE_URL)")
    parser.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who the event names as the actor")
    parser.add_argument("--if-missing", action="store_true", help="succeed, changing nothing, if the username is taken")
    args = parser.parse_args(argv)
    try:
        password = _read_password(args.password_file)
    except (OSError, ValueError) as error:
        print(f"no password: {error}", file=sys.stderr)
        return 2
    return asyncio.run(_create_admin(args, password))


def token_keys(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry token-keys",
        description="Make the Ed25519 key pair that access tokens are signed with, unless the private key "
        "exists (then only its public key is written where missing). Give the private key to registry alone "
        "(BEACON_JWT_PRIVATE_KEY_FILE) and the public key to every service (BEACON_JWT_PUBLIC_KEY_FILE).",
    )
    parser.add_argument("--private", type=Path, required=True, help="the private key's PEM file (made 0600)")
    parser.add_argument("--public", type=Path, required=True, help="the public key's PEM file")
    args = parser.parse_args(argv)
    existed = args.private.exists()
    load_or_make_key_pair(args.private, args.public, warn="give it to registry alone")
    print(f"{'kept' if existed else 'made'} {args.private}; public key in {args.public}")
    return 0
