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
from sqlalchemy import DateTime, LargeBinary, Table, event
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
HOLD_WRITES = "beacon_hold_writes"


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
    conn: sqlite3.Connection,
    begin: str | None,
    held: list[tuple[str, Any, bool]],
    operation: str | None,
    parameters: Any,
    many: bool,
) -> tuple[Any, int, int | None, list[Any], bool]:
    """In the driver's thread: the deferred BEGIN, the statements held back, then this one (or,
    with none, the COMMIT)."""
    if begin is not None:
        conn.execute(begin)
    for held_operation, held_parameters, held_many in held:
        if held_many:
            conn.executemany(held_operation, held_parameters)
        else:
            conn.execute(held_operation, held_parameters if held_parameters is not None else ())
    if operation is None:
        conn.commit()
        return None, -1, None, [], conn.in_transaction
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows, conn.in_transaction
    finally:
        cursor.close()


_HELD_BACK = ("INSERT ", "UPDATE ", "DELETE ")


async def _no_trip() -> None:
    return None


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
        adapted = self._adapt_connection
        if adapted._held is not None and operation.startswith(_HELD_BACK) and " RETURNING " not in operation:
            adapted._held.append((operation, parameters, many))  # goes with the next trip
            self._description, self._rowcount, self._lastrowid = None, -1, None
            self._rows = collections.deque()
            await_(_no_trip())  # SQLAlchemy's async execute insists on an await; this one never waits
            return
        driver = self._connection  # aiosqlite's Connection: `_execute` runs a call in its thread
        begin, adapted._begin = adapted._begin, None
        held = adapted.take_held()
        try:
            outcome = await_(driver._execute(_run_statement, driver._conn, begin, held, operation, parameters, many))
        except Exception as error:  # noqa: BLE001  (re-raised as the DBAPI's, as SQLAlchemy's adapter does)
            adapted._in_transaction = True  # not known: the next commit or rollback goes to SQLite
            adapted._handle_exception(error)
        self._description, self._rowcount, self._lastrowid, rows, adapted._in_transaction = outcome
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
    """Also: the BEGIN goes along with the transaction's first statement (`defer_begin`), and a
    commit or rollback with no transaction open (the pool's reset after a commit) stays here."""

    __slots__ = ("_begin", "_held", "_in_transaction")
    _cursor_cls = _OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None
        self._held: list[tuple[str, Any, bool]] | None = None  # a list while holding writes back
        self._in_transaction = True  # until a statement tells

    def defer_begin(self, statement: str, hold_writes: bool) -> None:
        self._begin = statement
        self._held = [] if hold_writes else None

    def take_held(self) -> list[tuple[str, Any, bool]]:
        held = self._held
        if not held:
            return []
        self._held = []
        return held

    def commit(self) -> None:
        held, self._held = self._held or [], None
        if held:  # the writes held back, and the COMMIT, in one trip
            begin, self._begin = self._begin, None
            driver = self._connection
            try:
                outcome = await_(driver._execute(_run_statement, driver._conn, begin, held, None, None, False))
            except Exception as error:  # noqa: BLE001
                self._in_transaction = True
                self._handle_exception(error)
            self._in_transaction = outcome[-1]
        elif self._begin is not None:  # nothing ran since the BEGIN: nothing to commit
            self._begin = None
        elif self._in_transaction:
            super().commit()
            self._in_transaction = False

    def rollback(self) -> None:
        self._held = None
        if self._begin is not None:
            self._begin = None
        elif self._in_transaction:
            super().rollback()
            self._in_transaction = False


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
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY when another writer got in between.
        begin = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        dbapi_connection = connection.connection.dbapi_connection
        if isinstance(dbapi_connection, _OneTripConnection):
            # Sent with the first statement: one trip fewer.
            dbapi_connection.defer_begin(begin, bool(connection.get_execution_options().get(HOLD_WRITES)))
        else:
            connection.exec_driver_sql(begin)

    return engine


_WRITE_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite, the process's writers queue here, in order, for the one
    write lock: left to SQLite, a waiting writer polls with sleeps of up to 100 ms, which under
    a rush (the relay marking rows while check-ins commit) turns 1 ms commits into 20 ms ones."""
    async with _writing(engine, hold_writes=False) as conn:
        yield conn


@asynccontextmanager
async def writing_in_one_trip(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction (as `writing`) whose INSERT, UPDATE and DELETE statements are, on
    SQLite, held back and sent with the next query or with the COMMIT: a rush's short write
    transaction then holds the write lock for one trip to the driver's thread, not one per
    statement. For writes whose results nobody reads: their row counts are unknown (-1), and a
    failure (an IntegrityError) is raised by the next query or by the commit, at the end of the
    `async with`. On PostgreSQL, exactly `writing`."""
    async with _writing(engine, hold_writes=True) as conn:
        yield conn


@asynccontextmanager
async def _writing(engine: AsyncEngine, hold_writes: bool) -> AsyncIterator[AsyncConnection]:
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _WRITE_LOCKS.setdefault(engine.sync_engine, asyncio.Lock())
    await lock.acquire()
    try:
        conn = await engine.connect()
        if hold_writes:
            await conn.execution_options(**{HOLD_WRITES: True})
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


async def add_to_counters(
    conn: AsyncConnection, table: Table, keys: Sequence[str], value: str, rows: Sequence[Sequence[Any]]
) -> None:
    """Add each row's value to the counter its keys name, inserting the counters that are new.
    `rows` are (key..., value) in `keys` order (see `write_rows`)."""
    await write_rows(conn, table, [*keys, value], rows, on_conflict=keys, add=(value,))


async def write_rows(
    conn: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: Sequence[str] = (),
    replace: Sequence[str] = (),
    add: Sequence[str] = (),
) -> None:
    """Insert `rows` (tuples in `columns` order) with one statement sent once to the driver.

    With `on_conflict` (the key columns), a row whose key exists instead sets the `replace`
    columns to the row's values and adds the row's `add` columns to the stored ones; with
    neither, it is left as it is. Through SQLAlchemy's `execute` a row costs about 10 µs more
    (parameter dicts, per-row bind processing), and the ledger and rebuilds write millions.
    Values go through each column type's own bind processing, as SQLAlchemy would do it.
    """
    if not rows:
        return
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    name = quote(table.name)
    statement = f"INSERT INTO {name} ({', '.join(map(quote, columns))}) VALUES ({_marks(dialect, len(columns))})"
    if on_conflict:
        sets = [f"{quote(c)} = excluded.{quote(c)}" for c in replace]
        sets += [f"{quote(c)} = {name}.{quote(c)} + excluded.{quote(c)}" for c in add]
        action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
        statement += f" ON CONFLICT ({', '.join(map(quote, on_conflict))}) {action}"
    await conn.exec_driver_sql(statement, _bound(conn, table, columns, rows))


async def update_rows(
    conn: AsyncConnection, table: Table, key: Sequence[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Set `columns` of the row each of `rows` names by its `key`: rows are (column values...,
    key values...), one statement sent once to the driver (see `write_rows`)."""
    if not rows:
        return
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    marks = _marks(dialect, len(columns) + len(key)).split(", ")
    sets = ", ".join(f"{quote(c)} = {m}" for c, m in zip(columns, marks, strict=False))
    where = " AND ".join(f"{quote(c)} = {m}" for c, m in zip(key, marks[len(columns) :], strict=True))
    statement = f"UPDATE {quote(table.name)} SET {sets} WHERE {where}"
    await conn.exec_driver_sql(statement, _bound(conn, table, [*columns, *key], rows))


def _marks(dialect: Any, count: int) -> str:
    if dialect.paramstyle == "qmark":
        return ", ".join("?" for _ in range(count))
    if dialect.paramstyle == "numeric_dollar":
        return ", ".join(f"${n}" for n in range(1, count + 1))
    raise NotImplementedError(f"parameter style {dialect.paramstyle}")


def _bound(conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Any]:
    """The rows with each column's values bind-processed; a column's repeated values (a day, a
    timestamp) are processed once."""
    dialect = conn.dialect
    processing = [
        (index, process)
        for index, column in enumerate(columns)
        if (process := _bind_processor(table.c[column].type, dialect)) is not None
    ]
    if not processing:
        return list(rows)
    values_by_column: list[Any] = list(zip(*rows, strict=True))
    for index, process in processing:
        values = values_by_column[index]
        try:
            done = {value: process(value) for value in set(values)}
        except TypeError:  # unhashable values (JSON): each on its own
            values_by_column[index] = list(map(process, values))
        else:
            values_by_column[index] = list(map(done.__getitem__, values))
    return list(zip(*values_by_column, strict=True))


def _bind_processor(column_type: Any, dialect: Any) -> Any:
    if isinstance(column_type, LargeBinary):
        return None  # bytes go to every driver as they are (SQLite's would wrap each in a memoryview)
    return column_type._cached_bind_processor(dialect)


async def fetch_in(
    conn: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    key: Sequence[str],
    keys: Sequence[Sequence[Any]],
    *,
    for_update: bool = False,
    chunk: int = 500,
) -> list[tuple[Any, ...]]:
    """The `columns` of the rows whose `key` columns hold one of `keys` (distinct tuples in
    `key` order), `chunk` keys a statement, sent to the driver as they are (see `write_rows`); the
    values come back as SQLAlchemy's column types make them. `for_update` locks the rows on
    PostgreSQL (SQLite's one writer already queues).

    On PostgreSQL each key looks its rows up by itself. A list of keys in a WHERE is tested
    against every row read, and where a table's statistics lag its rows (a ledger or a rebuild
    writing into new tables, autovacuum off) every row is read: 800 comparisons a row, 170 ms a
    chunk at 60,000 rows. Joined to the keys, the whole table was still hashed (a million
    service records read a chunk); by key, about 5 ms for 400 keys at a million rows. SQLite
    3.40 scans the whole table for `(a, b) IN (VALUES ...)` and answers a join to the keys by
    their index (a single column's IN list too)."""
    if not keys:
        return []
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    types = [table.c[c].type for c in columns]
    name = quote(table.name)
    selected = ", ".join(f"{name}.{quote(c)}" for c in columns)
    if dialect.name == "postgresql":
        # One array a key column, so one statement whatever the number of keys. Each key looks
        # its rows up on its own (OFFSET 0 keeps the subquery from being merged into a join the
        # planner may answer by hashing the whole table), in the keys' order, which is also the
        # order their rows are locked in.
        arrays = ", ".join(f"CAST(${n} AS {table.c[c].type.compile(dialect)}[])" for n, c in enumerate(key, 1))
        where = " AND ".join(f"{name}.{quote(c)} = k.{quote(c)}" for c in key)
        lock = " FOR UPDATE" if for_update else ""
        by_key = (
            f"SELECT {', '.join(f'found.{quote(c)}' for c in columns)} "
            f"FROM unnest({arrays}) AS k({', '.join(map(quote, key))}) "
            f"CROSS JOIN LATERAL (SELECT {selected} FROM {name} WHERE {where} OFFSET 0{lock}) AS found"
        )
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), chunk):
        part = _bound(conn, table, key, keys[start : start + chunk])
        if dialect.name == "postgresql":
            statement = by_key
            parameters: tuple[Any, ...] = tuple(list(values) for values in zip(*part, strict=True))
        else:
            width = len(key)
            marks = _marks(dialect, len(part) * width).split(", ")
            if width == 1:
                statement = f"SELECT {selected} FROM {name} WHERE {quote(key[0])} IN ({', '.join(marks)})"
            else:
                rows = ", ".join(f"({', '.join(marks[i : i + width])})" for i in range(0, len(marks), width))
                on = " AND ".join(f"{name}.{quote(c)} = k.column{n}" for n, c in enumerate(key, 1))
                statement = f"SELECT {selected} FROM (VALUES {rows}) AS k JOIN {name} ON {on}"
            parameters = tuple(value for row in part for value in row)
        # The keys are distinct: no row comes twice.
        result = await conn.exec_driver_sql(statement, parameters)
        # A processor may depend on the type the driver says it returns (PostgreSQL's numerics).
        described = result.cursor.description if result.cursor is not None else None
        codes = [d[1] for d in described] if described else [None] * len(types)
        processors = [t._cached_result_processor(dialect, code) for t, code in zip(types, codes, strict=True)]
        found.extend(_processed(result.all(), processors))
    return found


def _processed(rows: Sequence[Any], processors: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows with each column's result processing; repeated values (a day) processed once."""
    if not rows or all(process is None for process in processors):
        return [tuple(row) for row in rows]
    values_by_column: list[Any] = list(zip(*rows, strict=True))
    for index, process in enumerate(processors):
        if process is not None:
            values = values_by_column[index]
            done = {value: process(value) for value in set(values)}
            values_by_column[index] = list(map(done.__getitem__, values))
    return list(zip(*values_by_column, strict=True))
