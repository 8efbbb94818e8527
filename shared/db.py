"""Database engines: SQLite (embedded default) or PostgreSQL, chosen by URL alone."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import DateTime, event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Insert
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util.concurrency import await_

READ_ONLY = "beacon_read_only"


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is UTC and timezone-aware on the way in and out, on every backend
    (SQLite keeps no zone and would hand back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Beacon stores UTC-aware timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def async_url(url: str) -> str:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _run_statement(
    conn: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> tuple[Any, int, int | None, list[Any]]:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A statement in one trip to aiosqlite's thread: open a cursor, execute, fetch, close. The
    stock adapter makes each of those a trip of its own, and under load every trip waits for a
    turn of the busy event loop, the write lock held all the while (a check-in's write took 13
    trips, now 6)."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    def _run(self, operation: str, parameters: Any, many: bool) -> None:
        driver = self._connection  # aiosqlite's Connection: `_execute` runs a call in its thread
        try:
            outcome = await_(driver._execute(_run_statement, driver._conn, operation, parameters, many))
        except Exception as error:  # noqa: BLE001  (re-raised as the DBAPI's, as SQLAlchemy's adapter does)
            self._adapt_connection._handle_exception(error)
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._run(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        self._run(operation, seq_of_parameters, many=True)

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        pass  # the driver's cursor is closed already; the rows stay

    def close(self) -> None:
        self._rows.clear()


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor


class _OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *args: Any, **kwargs: Any) -> _OneTripConnection:
        connection = self.aiosqlite.connect(*args, **kwargs)
        connection._thread.daemon = True  # as SQLAlchemy's adapter does: never hold up the exit
        return _OneTripConnection(self, await_(connection))


def make_engine(url: str, **options: Any) -> AsyncEngine:
    url = async_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, **options)

    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    if make_url(url).get_driver_name() == "aiosqlite":
        options.setdefault("module", _OneTripDbapi(aiosqlite, sqlite3))
    engine = create_async_engine(url, connect_args={"timeout": 30}, **options)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); pysqlite's implicit transactions would defeat it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged command must survive a power cut, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
            # then writes fails at once with SQLITE_BUSY when another writer got in between.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_WRITE_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite, the process's writers queue here, in order, for the one
    write lock: left to SQLite, a waiting writer polls with sleeps of up to 100 ms, which under
    a rush (the relay marking rows while check-ins commit) turns 1 ms commits into 20 ms ones."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _WRITE_LOCKS.setdefault(engine.sync_engine, asyncio.Lock())
    await lock.acquire()
    try:
        conn = await engine.connect()
    except BaseException:
        lock.release()
        raise
    try:
        try:
            async with conn.begin():
                yield conn
        finally:
            lock.release()
    finally:
        # The pool's reset on return (a rollback, with nothing left to undo) outside the lock:
        # the next writer need not wait for that trip to the driver's thread.
        await conn.close()


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for queries only: on SQLite it does not take the write lock."""
    async with engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY: True})
        yield conn


def upsert(conn: AsyncConnection, table: Any) -> Insert:
    """The dialect's INSERT that supports ON CONFLICT, for the connection's backend."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def is_sqlite(conn_or_engine: AsyncConnection | AsyncEngine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"
