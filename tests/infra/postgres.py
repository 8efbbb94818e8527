"""A real PostgreSQL for the tests: a container where Docker answers, else the server at
BEACON_TEST_PG_URL (default: the local one), with throwaway databases."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.infra.docker import docker_available

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of an administrative database on a real server."""
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    yield os.environ.get("BEACON_TEST_PG_URL", DEFAULT_URL)


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def throwaway_database(admin_url: str) -> AsyncIterator[str]:
    name = f"beacon_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_plain(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(_plain(admin_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_plain(admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def database(kind: str, name: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh store for one service of a test: a SQLite file, or a throwaway PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / (name + '.db')}"
        return
    async with throwaway_database(request.getfixturevalue("postgres_admin_url")) as url:
        yield url
