"""shared.db's engines on SQLite and PostgreSQL: what a statement gives back, and the write
transaction's lock and connection coming back after a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import add_to_counters, fetch_in, make_engine, reading, writing
from tests.infra.postgres import throwaway_database
from tests.infra.statements import plan_of, statements_sent

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("thing_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), nullable=False, unique=True),
)

tallies = Table(
    "tallies",
    metadata,
    Column("node", String(15), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("value", BigInteger, nullable=False),
)


@asynccontextmanager
async def engine_with_tables(url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url)
    async with writing(engine) as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with engine_with_tables(database_url) as engine:
        yield engine


async def test_a_statement_gives_back_its_rows_row_counts_and_new_keys(engine: AsyncEngine) -> None:
    async with writing(engine) as conn:
        inserted = await conn.execute(things.insert().values(name="lantern"))
        assert inserted.inserted_primary_key[0] is not None
        await conn.execute(things.insert(), [{"name": "drum"}, {"name": "kite"}])
        renamed = await conn.execute(
            update(things).where(things.c.name.in_(["drum", "kite"])).values(name=things.c.name + "s")
        )
        assert renamed.rowcount == 2
    async with reading(engine) as conn:
        rows = (await conn.execute(select(things.c.name).order_by(things.c.name))).mappings().all()
        assert [r["name"] for r in rows] == ["drums", "kites", "lantern"]
        none = await conn.execute(select(things).where(things.c.name == bindparam("name")), {"name": "gong"})
        assert none.first() is None


async def test_a_failed_write_rolls_back_and_the_next_writers_go_ahead(engine: AsyncEngine) -> None:
    async with writing(engine) as conn:
        await conn.execute(things.insert().values(name="lantern"))
    with pytest.raises(IntegrityError):
        async with writing(engine) as conn:
            await conn.execute(things.insert().values(name="drum"))
            await conn.execute(things.insert().values(name="lantern"))  # taken

    async def write(name: str) -> None:
        async with writing(engine) as conn:
            await conn.execute(things.insert().values(name=name))

    await asyncio.wait_for(asyncio.gather(*(write(f"kite-{n}") for n in range(20))), timeout=30)
    async with reading(engine) as conn:
        assert await conn.scalar(select(func.count()).select_from(things).where(things.c.name == "drum")) == 0
        assert await conn.scalar(select(func.count()).select_from(things)) == 21


async def test_counters_are_added_to_and_new_ones_inserted_in_one_statement(engine: AsyncEngine) -> None:
    first, second = date(2026, 2, 12), date(2026, 2, 13)
    async with writing(engine) as conn:
        await add_to_counters(conn, tallies, ("node", "day"), "value", [("370303", first, 5), ("370304", first, 1)])
        await add_to_counters(conn, tallies, ("node", "day"), "value", [])
    async with writing(engine) as conn:
        await add_to_counters(conn, tallies, ("node", "day"), "value", [("370303", first, -2), ("370303", second, 7)])
    async with reading(engine) as conn:
        rows = await conn.execute(select(tallies).order_by(tallies.c.node, tallies.c.day))
        assert [tuple(r) for r in rows] == [("370303", first, 3), ("370303", second, 7), ("370304", first, 1)]
        # Days were stored as the Date column stores them: a range query finds them.
        assert await conn.scalar(select(func.sum(tallies.c.value)).where(tallies.c.day >= second)) == 7


async def test_rows_are_fetched_by_a_composite_key_through_its_index(engine: AsyncEngine) -> None:
    days = [date(2026, 2, day) for day in range(1, 29)]
    async with writing(engine) as conn:
        rows = [(f"3703{n:02d}", day, n * 100 + day.day) for n in range(30) for day in days]
        await add_to_counters(conn, tallies, ("node", "day"), "value", rows)
    wanted = [("370301", days[0]), ("370307", days[13]), ("370329", days[27]), ("370399", days[0])]
    with statements_sent(engine) as statements:
        async with reading(engine) as conn:
            found = await fetch_in(conn, tallies, ("node", "day", "value"), ("node", "day"), wanted, chunk=3)
    assert sorted(found) == [("370301", days[0], 101), ("370307", days[13], 714), ("370329", days[27], 2928)]
    assert len(statements) == 2  # three keys a statement
    if engine.dialect.name == "sqlite":
        # Looked up by the primary key, not by reading every row: the ledger's day totals grow
        # to millions of rows, and each of its batches asks for a thousand of them.
        for statement, parameters in statements:
            steps = (await plan_of(engine, statement, parameters)).splitlines()
            assert not any(step.startswith("SCAN tallies") for step in steps), steps
            assert any(step.startswith("SEARCH tallies USING INDEX") for step in steps), steps


@pytest.fixture
async def postgresql_engine(postgres_admin_url: str) -> AsyncIterator[AsyncEngine]:
    async with throwaway_database(postgres_admin_url) as url, engine_with_tables(url) as engine:
        yield engine


async def test_postgresql_looks_each_key_up_by_the_index_rather_than_reading_the_whole_table(
    postgresql_engine: AsyncEngine,
) -> None:
    """A ledger catching up into new tables asks for hundreds of keys a statement while the
    tables grow faster than PostgreSQL gathers their statistics (never, with autovacuum off).
    Given as a list of key tuples, the keys were tested against each row in a scan of the whole
    table (800 comparisons a row: 170 ms a chunk at 60,000 service records, the ledger's
    catch-up 1,100 events/s). Joined to the keys, it hashed the whole table instead (a million
    service records read for each chunk). Each key is looked up by the index."""
    engine = postgresql_engine
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(200)]
    async with writing(engine) as conn:
        for node in range(0, 100, 10):
            rows = [(f"3703{n:02d}", day, n * 1000 + i) for n in range(node, node + 10) for i, day in enumerate(days)]
            await add_to_counters(conn, tallies, ("node", "day"), "value", rows)
        assert await conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'tallies'")) < 0  # not analysed
    wanted = [(f"3703{n:02d}", day) for n in range(0, 100, 7) for day in days[::8]] + [("370399", date(2027, 1, 1))]
    with statements_sent(engine) as statements:
        async with writing(engine) as conn:
            found = await fetch_in(conn, tallies, ("node", "day", "value"), ("node", "day"), wanted, for_update=True)
    assert sorted(found) == [
        (f"3703{n:02d}", day, n * 1000 + days.index(day)) for n in range(0, 100, 7) for day in days[::8]
    ]
    ((statement, parameters),) = statements  # the chunk takes them all
    plan = await plan_of(engine, statement, parameters)
    assert " OR " not in plan, plan  # no list of keys tested against each row
    assert '"Node Type": "Seq Scan"' not in plan, plan  # nor the whole table read to join them
    assert '"Index Name": "tallies_pkey"' in plan, plan
