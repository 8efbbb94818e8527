"""Each service's migrations on SQLite and PostgreSQL: they make exactly the models' schema, go
down and up again, adopt a database that create_all made, and a model changed without a revision
shows as a difference."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import Column, Index, MetaData, String, Table, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.projection import FigureTables
from shared.db import make_engine
from shared.migrations import SchemaMismatch, ServiceMigrations, migrations_of
from tests.infra.postgres import database
from tests.infra.waiting import eventually

SERVICES = ("registry", "dispatch", "points", "reporting")
KINDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: a SQLite file, or a throwaway database on the real PostgreSQL."""
    async with database(request.param, "service", tmp_path, request) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda sync: inspect(sync).get_columns(table))
    return {column["name"] for column in found}


async def create_all(engine: AsyncEngine, metadata: MetaData) -> None:
    """What every service's start did before migrations."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


def head(migrations: ServiceMigrations) -> str:
    return migrations.script().get_current_head()


@pytest.mark.parametrize("service", SERVICES)
async def test_an_empty_database_migrated_to_head_is_exactly_the_models(service: str, engine: AsyncEngine) -> None:
    migrations = migrations_of(service)
    await migrations.upgrade(engine)

    assert await migrations.current(engine) == head(migrations)
    assert await migrations.differences(engine) == []
    assert await tables(engine) == set(migrations.metadata.tables) | {"alembic_version"}


@pytest.mark.parametrize("service", SERVICES)
async def test_down_to_base_drops_every_table_and_up_again_is_the_models(service: str, engine: AsyncEngine) -> None:
    migrations = migrations_of(service)
    await migrations.upgrade(engine)

    await migrations.downgrade(engine, "base")
    assert await migrations.current(engine) is None
    assert await tables(engine) == {"alembic_version"}

    await migrations.upgrade(engine)
    assert await migrations.differences(engine) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_create_all_made_is_adopted_at_head_with_its_rows(service: str, engine: AsyncEngine) -> None:
    migrations = migrations_of(service)
    await create_all(engine, migrations.metadata)
    checkpoints = migrations.metadata.tables["stream_checkpoints"]
    async with engine.begin() as conn:
        await conn.execute(insert(checkpoints).values(consumer="kept", stream="REGISTRY", sequence=7))

    await migrations.upgrade(engine)

    assert await migrations.current(engine) == head(migrations)
    assert await migrations.differences(engine) == []
    async with engine.connect() as conn:
        assert await conn.scalar(select(checkpoints.c.sequence).where(checkpoints.c.consumer == "kept")) == 7


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_made_before_a_later_revision_is_adopted_at_the_first_and_migrated(
    service: str, engine: AsyncEngine
) -> None:
    # The first revision is the schema create_all made before migrations: such a database is
    # that revision's tables without alembic's bookkeeping.
    migrations = migrations_of(service)
    first = migrations.script().get_base()
    await migrations.upgrade(engine, first)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE alembic_version")

    await migrations.upgrade(engine)

    assert await migrations.current(engine) == head(migrations)
    assert await migrations.differences(engine) == []


async def test_points_day_totals_come_from_the_records_and_go_back_to_a_table_on_the_way_down(
    engine: AsyncEngine,
) -> None:
    migrations = migrations_of("points")
    await migrations.upgrade(engine, "0002")
    record = (
        "INSERT INTO service_records (record_id, volunteer_number, service_district, service_date, field,"
        " group_served, source, rule_version, version, hours, points, minutes)"
        " VALUES ('{0}', '{1}', '370303', '{2}', 'legal_aid', 'elderly', 'attendance', 1, 2, 2, {3}, 120)"
    )
    async with engine.begin() as conn:
        for row in (("R1", "V1", "2026-11-01", 10), ("R2", "V1", "2026-11-01", 5), ("R3", "V1", "2026-11-02", 7)):
            await conn.exec_driver_sql(record.format(*row))
        await conn.exec_driver_sql("INSERT INTO day_points VALUES ('V1', '2026-11-01', 15), ('V1', '2026-11-02', 7)")

    await migrations.upgrade(engine)
    assert "day_points" not in await tables(engine)
    assert await migrations.differences(engine) == []

    await migrations.downgrade(engine, "0002")
    async with engine.connect() as conn:
        totals = await conn.exec_driver_sql("SELECT service_date, points FROM day_points ORDER BY service_date")
        assert [(str(day), points) for day, points in totals] == [("2026-11-01", 15), ("2026-11-02", 7)]


async def test_an_adopted_database_gets_the_tables_it_lacked_as_create_all_gave_them(engine: AsyncEngine) -> None:
    migrations = migrations_of("registry")
    older = MetaData()  # the models before sign_in_failures was added
    for table in migrations.metadata.sorted_tables:
        if table.name != "sign_in_failures":
            table.to_metadata(older)
    await create_all(engine, older)

    await migrations.upgrade(engine)

    assert "sign_in_failures" in await tables(engine)
    assert await migrations.differences(engine) == []


async def test_a_database_unlike_the_models_is_refused_and_left_as_it_was(engine: AsyncEngine) -> None:
    migrations = migrations_of("points")
    await create_all(engine, migrations.metadata)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE accounts ADD COLUMN nickname VARCHAR(20)")

    with pytest.raises(SchemaMismatch, match="nickname"):
        await migrations.upgrade(engine)

    assert "alembic_version" not in await tables(engine)
    assert "nickname" in await columns(engine, "accounts")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_model_changed_without_a_revision_differs_from_the_migrated_schema(
    service: str, engine: AsyncEngine
) -> None:
    migrations = migrations_of(service)
    await migrations.upgrade(engine)
    changed = MetaData()
    for table in migrations.metadata.sorted_tables:
        table.to_metadata(changed)
    outbox = changed.tables["outbox"]
    outbox.append_column(Column("partner", String(40)))
    Index("ix_outbox_subject", outbox.c.subject)

    differences = await migrations.differences(engine, changed)

    assert len(differences) == 2
    assert [(d[0], d[2], d[3].name) for d in differences if d[0] == "add_column"] == [
        ("add_column", "outbox", "partner")
    ]
    assert [(d[0], d[1].name) for d in differences if d[0] == "add_index"] == [("add_index", "ix_outbox_subject")]


async def test_reporting_figure_tables_are_left_to_the_projector(engine: AsyncEngine) -> None:
    migrations = migrations_of("reporting")
    await migrations.upgrade(engine)
    figures = FigureTables(MetaData(), 3)
    await create_all(engine, figures.nodes.metadata)

    assert await migrations.differences(engine) == []
    await migrations.downgrade(engine, "base")
    assert await tables(engine) == {"alembic_version"} | {table.name for table in figures.all()}

    # Only a generation's figure tables are left out: any other stray table shows.
    stray = MetaData()
    Table("counters_scratch", stray, Column("x", String(1)))
    await migrations.upgrade(engine)
    await create_all(engine, stray)
    assert [(d[0], d[1].name) for d in await migrations.differences(engine)] == [("remove_table", "counters_scratch")]


async def test_services_started_together_in_one_process_each_migrate_their_own_store(tmp_path: Path) -> None:
    engines = {service: make_engine(f"sqlite:///{tmp_path / service}.db") for service in SERVICES}
    try:
        await asyncio.gather(*(migrations_of(service).upgrade(engine) for service, engine in engines.items()))
        for service, engine in engines.items():
            assert await migrations_of(service).differences(engine) == []
    finally:
        for engine in engines.values():
            await engine.dispose()


async def replica(database_url: str) -> asyncio.subprocess.Process:
    """A replica of dispatch starting: another process migrating the same store."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.migrations", "upgrade", "dispatch", "--database-url", database_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def test_replicas_starting_together_on_sqlite_all_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dispatch.db'}"
    replicas = [await replica(url) for _ in range(3)]
    outputs = [await process.communicate() for process in replicas]

    assert [process.returncode for process in replicas] == [0, 0, 0], outputs
    engine = make_engine(url)
    try:
        assert await migrations_of("dispatch").differences(engine) == []
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_replicas_starting_together_on_postgresql_take_turns(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    migrations = migrations_of("dispatch")
    async with database("postgresql", "dispatch", tmp_path, request) as url:
        holder = await asyncpg.connect(url)
        try:
            # Hold the replicas' lock while they start, so that all three are waiting for it, then
            # let them race for it.
            await holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", migrations.lock_key)
            replicas = [await replica(url) for _ in range(3)]
            waiting = await eventually(
                lambda: holder.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                lambda count: count == 3,
                timeout=60,
            )
            assert waiting == 3
            await holder.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", migrations.lock_key)
            outputs = [await process.communicate() for process in replicas]
        finally:
            await holder.close()

        assert [process.returncode for process in replicas] == [0, 0, 0], outputs
        engine = make_engine(url)
        try:
            assert await migrations.current(engine) == head(migrations)
            assert await migrations.differences(engine) == []
        finally:
            await engine.dispose()
