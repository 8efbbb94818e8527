"""Bulk import benchmark: N generated volunteers from a CSV file, as a provincial export has them.

Writes N rows (Chinese headers and values, valid and unique ID numbers, ~100 communities of one
district) to a CSV file in a temp dir, loads the org tree, then imports the file with
services.registry.importer into a fresh store (SQLite in the temp dir unless --database-url names
PostgreSQL: then a throwaway schema is created and dropped). Prints rows/s and memory last as one
JSON line. Needs no NATS: the events stay in the outbox.
"""

from __future__ import annotations

import argparse
import csv
import secrets
import sys
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import shared.events  # noqa: F401  (registers the catalog)
from bench._common import Stopwatch, current_rss_mb, main_of, progress, rate
from services.registry import store
from services.registry.domain.org import TreeRow
from services.registry.handlers import Registry
from services.registry.handlers.org import load_tree
from services.registry.importer import BATCH_SIZE, ImportReport, import_volunteers
from services.registry.vault import Vault, VaultKeys
from shared.db import make_engine
from shared.events.common import OrgLevel
from shared.eventstore import EventStore
from shared.web import Actor

NAME = "import_volunteers"
DISTRICT = "370303"
STREETS, COMMUNITIES_PER_STREET = 10, 10
TODAY = date(2026, 1, 1)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
STATUSES = ("群众", "中共党员", "共青团员", "群众", "公职人员", "中共预备党员", "群众")
SKILLS = ("急救", "交通引导；助老", "first_aid,法律", "", "支教;文艺", "辅导")
SURNAMES = "王李张刘陈杨黄赵吴周"


def resident_id(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def community(n: int) -> str:
    street_no, community_no = n % STREETS + 1, (n // STREETS) % COMMUNITIES_PER_STREET + 1
    return f"{DISTRICT}{street_no:03d}{community_no:03d}"


def tree() -> list[TreeRow]:
    rows = [
        TreeRow(1, "370300", None, OrgLevel.city, "淄博市", 4_700_000, 300_000),
        TreeRow(2, DISTRICT, "370300", OrgLevel.district, "张店区", 1_000_000, 60_000),
    ]
    for s in range(1, STREETS + 1):
        street = f"{DISTRICT}{s:03d}000"
        rows.append(TreeRow(len(rows) + 1, street, DISTRICT, OrgLevel.street, f"街道{s}", 80_000, 5_000))
        for c in range(1, COMMUNITIES_PER_STREET + 1):
            rows.append(TreeRow(len(rows) + 1, f"{DISTRICT}{s:03d}{c:03d}", street, OrgLevel.community, f"社区{s}-{c}", 8_000, 500))
    return rows


def write_csv(path: Path, rows: int) -> None:
    """N valid, distinct volunteers: birth dates from 1950 on, 1,000 sequence numbers per day."""
    first_day = date(1950, 1, 1).toordinal()
    with path.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["序号", "姓名", "性别", "身份证号", "手机号", "所属社区代码", "政治面貌", "技能", "同意授权"])
        for n in range(rows):
            born = date.fromordinal(first_day + (n // 1000) * 7 % 20_000)
            number = resident_id(f"{DISTRICT}{born:%Y%m%d}{n % 1000:03d}")
            writer.writerow([
                n + 1, f"{SURNAMES[n % 10]}志愿{n % 997}", "男" if n % 2 else "女", number,
                f"13{n % 10}{n:08d}"[-11:], community(n), STATUSES[n % 7], SKILLS[n % 6], "是",
            ])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="volunteers in the file (default 100000)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"rows per transaction (default {BATCH_SIZE})")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://... to bench PostgreSQL (a throwaway schema is created and dropped); "
        "default: a SQLite file in a temp dir",
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.batch_size < 1:
        parser.error("sizes must be positive")
    return args


async def open_engine(url: str | None, workdir: Path) -> tuple[AsyncEngine, str, str | None]:
    if not url:
        return make_engine(f"sqlite:///{workdir / 'registry.db'}"), "sqlite", None
    backend = make_url(url).get_backend_name()
    if backend != "postgresql":
        return make_engine(url), backend, None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        await admin.dispose()
    return make_engine(url, connect_args={"server_settings": {"search_path": schema}}), backend, schema


async def drop_schema(url: str, schema: str) -> None:
    admin = make_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = workdir / "volunteers.csv"
    progress(f"writing {args.rows} volunteers to {path.name}")
    write_csv(path, args.rows)
    engine, backend, pg_schema = await open_engine(args.database_url, workdir)
    registry = Registry(EventStore(engine, store.schema), Vault(VaultKeys(secrets.token_bytes(32), secrets.token_bytes(32))))
    actor = Actor("bench")
    figures: dict[str, Any] = {
        "database": backend, "rows": args.rows, "batch_size": args.batch_size, "file_mb": round(path.stat().st_size / 2**20, 1),
    }
    try:
        await registry.events.create_tables()
        await load_tree(registry, actor, tree())
        rss_before = current_rss_mb()
        progress(f"importing ({backend}), {args.batch_size} rows per transaction; RSS {rss_before} MB")
        last_shown = 0

        def shown(report: ImportReport) -> None:
            nonlocal last_shown
            if report.rows - last_shown >= 20_000:
                last_shown = report.rows
                progress(f"  {report.rows} rows, {rate(report.rows, report.seconds)} rows/s, RSS {current_rss_mb()} MB")

        watch = Stopwatch()
        with path.open("rb") as file:
            report = await import_volunteers(
                registry, actor, iter(lambda: file.read(64 * 1024), b""), today=TODAY,
                batch_size=args.batch_size, on_batch=shown,
            )
        seconds = watch.seconds
        async with engine.connect() as conn:
            volunteers = await conn.scalar(select(func.count()).select_from(store.volunteers))
            events = await conn.scalar(select(func.count()).select_from(store.schema.events))
        if report.imported != args.rows or volunteers != args.rows or events != args.rows + len(tree()):
            raise SystemExit(
                f"imported {report.imported} of {args.rows} ({report.refused} refused, {report.skipped} skipped; "
                f"first problems {report.problems[:3]}); {volunteers} volunteer rows, {events} events"
            )
        figures.update(
            import_seconds=round(seconds, 3),
            import_rows_per_s=rate(report.imported, seconds),
            rss_before_import_mb=rss_before,
            rss_at_end_mb=current_rss_mb(),
        )
        progress(f"  {report.imported} imported in {seconds:.1f}s: {figures['import_rows_per_s']} rows/s")
        return figures
    finally:
        await engine.dispose()
        if pg_schema:
            await drop_schema(args.database_url, pg_schema)


main = main_of(NAME, parse_args, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
