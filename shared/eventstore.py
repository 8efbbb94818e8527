"""Each service's own event store: events, their outbox rows and its inbox, in one database.

Appending events writes their outbox rows in the same transaction (no dual write); a consumer
claims an event id in the same transaction as the state change it makes (idempotency).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

import msgspec
import uuid_utils
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.catalog import Event, EventCatalog
from shared.catalog import catalog as default_catalog
from shared.db import UtcDateTime, reading, upsert, write_rows, writing, writing_in_one_trip
from shared.envelope import EventEnvelope, utcnow
from shared.errors import NotFound
from shared.logs import current_correlation_id
from shared.tracing import current_traceparent

T = TypeVar("T")

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants a BIGINT identity.
Position = BigInteger().with_variant(Integer, "sqlite")


class ConcurrencyConflict(Exception):
    """Another command changed the aggregate first: nothing was written; reload and retry."""

    def __init__(self, aggregate_type: str, aggregate_id: str, expected: int, actual: int | None) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual
        found = "was changed concurrently" if actual is None else f"is at version {actual}"
        super().__init__(f"{aggregate_type} {aggregate_id} {found}, expected version {expected}")


async def retrying(command: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run a command (load, decide, append in one transaction) again when another writer changed
    the same aggregate first: it decides afresh on what that writer recorded. A user sees a 409
    only if the aggregate keeps changing under them."""
    for attempt in range(1, attempts + 1):
        try:
            return await command()
        except ConcurrencyConflict:
            if attempt == attempts:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * attempt))  # let the winner commit
    raise AssertionError("unreachable")


class EventStoreSchema:
    """The event store's tables, added to a service's own MetaData."""

    def __init__(self, metadata: MetaData) -> None:
        self.metadata = metadata
        self.events = Table(
            "events",
            metadata,
            Column("position", Position, primary_key=True, autoincrement=True),
            Column("event_id", String(36), nullable=False, unique=True),
            Column("event_type", String(100), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("aggregate_type", String(50), nullable=False),
            Column("aggregate_id", String(100), nullable=False),
            Column("aggregate_version", Integer, nullable=False),
            Column("occurred_at", UtcDateTime, nullable=False),
            Column("recorded_at", UtcDateTime, nullable=False),
            Column("envelope", LargeBinary, nullable=False),
            UniqueConstraint("aggregate_type", "aggregate_id", "aggregate_version", name="uq_events_aggregate_version"),
        )
        self.outbox = Table(
            "outbox",
            metadata,
            Column("position", Position, primary_key=True, autoincrement=True),
            Column("event_id", String(36), nullable=False, unique=True),
            Column("subject", String(200), nullable=False),
            Column("body", LargeBinary, nullable=False),
            Column("created_at", UtcDateTime, nullable=False),
            Column("published_at", UtcDateTime),
            Column("stream_sequence", BigInteger),
            # The W3C trace context of the span that appended the event: the relay sends it along.
            Column("traceparent", String(100)),
            Index(
                "ix_outbox_unpublished",
                "position",
                sqlite_where=text("published_at IS NULL"),
                postgresql_where=text("published_at IS NULL"),
            ),
        )
        self.inbox = Table(
            "inbox",
            metadata,
            Column("consumer", String(100), primary_key=True),
            Column("event_id", String(36), primary_key=True),
            Column("processed_at", UtcDateTime, nullable=False),
        )
        # How far each stream follower (shared.replay.StreamFollower) has applied each stream.
        self.checkpoints = Table(
            "stream_checkpoints",
            metadata,
            Column("consumer", String(100), primary_key=True),
            Column("stream", String(50), primary_key=True),
            Column("sequence", BigInteger, nullable=False),
        )
        # The hot statements, built once: building one per call (clauses, bind coercion, the
        # cache key) costs more CPU than SQLite takes to run it.
        events = self.events
        this_aggregate = (events.c.aggregate_type == bindparam("aggregate_type")) & (
            events.c.aggregate_id == bindparam("aggregate_id")
        )
        self.load_statement = select(events.c.envelope).where(this_aggregate).order_by(events.c.aggregate_version)
        self.version_statement = select(func.max(events.c.aggregate_version)).where(this_aggregate)


class EncodedEvent(NamedTuple):
    """An event as the store keeps it: its envelope's JSON and the columns it is found by. What
    `encode` makes, for events recorded in bulk (the ledger's) without an `EventEnvelope` each."""

    event_id: str
    type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: UUID | str
    subject: str
    body: bytes


def _payload_json(value: Any) -> Any:
    if isinstance(value, BaseModel):  # a model inside a payload (e.g. a list of lot shares)
        return value.__dict__
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_payload_json)


def encode(
    catalog: EventCatalog,
    event: Event,
    *,
    aggregate_id: str,
    aggregate_version: int,
    org_path: tuple[str, ...],
    actor: str,
    at: datetime,
    correlation_id: UUID | str | None = None,
    causation_id: UUID | str | None = None,
) -> EncodedEvent:
    """The envelope `catalog.envelope` would make, as JSON with the same text, without building
    and validating a model of it (a tenth of the time): for payloads this service has just
    made, whose models have no custom serializers. `at` is when it occurred and was recorded."""
    spec = type(event).spec
    if catalog.superseded(spec):
        raise ValueError(f"{spec.name} v{spec.version} is superseded: publish v{catalog.latest(spec.name).version}")
    event_id = str(uuid_utils.uuid7())
    correlation = correlation_id or current_correlation_id() or event_id
    body = _encoder.encode(
        {
            "event_id": event_id,
            "type": spec.name,
            "schema_version": spec.version,
            "occurred_at": at,
            "recorded_at": at,
            "aggregate_type": spec.aggregate,
            "aggregate_id": aggregate_id,
            "aggregate_version": aggregate_version,
            "org_path": org_path,
            "correlation_id": correlation,
            "causation_id": causation_id,
            "actor": actor,
            "payload": event.__dict__,
        }
    )
    return EncodedEvent(
        event_id, spec.name, spec.version, spec.aggregate, aggregate_id, aggregate_version, at, at, correlation,
        spec.subject(org_path[0]), body,
    )  # fmt: skip


@dataclass(frozen=True)
class History:
    """An aggregate's past: its payloads with the org path each was recorded under, its version."""

    entries: list[tuple[tuple[str, ...], Event]]
    version: int
    org_path: tuple[str, ...]

    @property
    def payloads(self) -> list[Event]:
        return [event for _, event in self.entries]


_EVENT_COLUMNS = (
    "event_id", "event_type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version",
    "occurred_at", "recorded_at", "envelope",
)  # fmt: skip
_OUTBOX_COLUMNS = ("event_id", "subject", "body", "created_at", "traceparent")


_LOCK_ONE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# unnest yields the keys in the array's order, and the locks are taken row by row as they come.
_LOCK_MANY = text("SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest(CAST(:keys AS text[])) AS k")


class Transaction:
    """One database transaction of a service: its events, outbox rows, inbox claims and views."""

    def __init__(self, conn: AsyncConnection, store: EventStore) -> None:
        self.conn = conn
        self._store = store
        self.appended: list[EventEnvelope | EncodedEvent] = []

    @property
    def catalog(self) -> EventCatalog:
        return self._store.catalog

    async def load(self, aggregate_type: str, aggregate_id: str) -> list[EventEnvelope]:
        rows = await self.conn.execute(
            self._store.schema.load_statement, {"aggregate_type": aggregate_type, "aggregate_id": aggregate_id}
        )
        return [EventEnvelope.model_validate_json(row.envelope) for row in rows]

    async def history(self, aggregate_type: str, aggregate_id: str, what: str | None = None) -> History:
        """The aggregate's events as payloads; NotFound when it has none (it does not exist)."""
        envelopes = await self.load(aggregate_type, aggregate_id)
        if not envelopes:
            raise NotFound(f"unknown {what or aggregate_type} {aggregate_id}")
        entries = [(e.org_path, self._store.catalog.payload_of(e)) for e in envelopes]
        return History(entries, len(envelopes), envelopes[-1].org_path)

    async def lock(self, aggregate_type: str, *aggregate_ids: str) -> None:
        """Hold the aggregates until this transaction ends, for a hot one (a shift many sign up for
        at once): concurrent commands then queue instead of failing their appends and retrying.
        PostgreSQL takes a transaction-scoped advisory lock each; SQLite's one writer already queues.
        Several are taken in one statement, in sorted order: two transactions that lock
        overlapping sets this way never deadlock (lock all of a transaction's at once)."""
        if self.conn.dialect.name != "postgresql" or not aggregate_ids:
            return
        keys = sorted({f"{aggregate_type}:{aggregate_id}" for aggregate_id in aggregate_ids})
        if len(keys) == 1:
            await self.conn.execute(_LOCK_ONE, {"key": keys[0]})
        else:
            await self.conn.execute(_LOCK_MANY, {"keys": keys})

    async def version_of(self, aggregate_type: str, aggregate_id: str) -> int:
        version = await self.conn.scalar(
            self._store.schema.version_statement, {"aggregate_type": aggregate_type, "aggregate_id": aggregate_id}
        )
        return version or 0

    async def record(
        self,
        aggregate_id: str,
        expected_version: int,
        new_events: Sequence[Event],
        *,
        org_path: tuple[str, ...],
        actor: str,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> list[EventEnvelope]:
        """Wrap payloads of one aggregate in envelopes, versions following `expected_version`."""
        envelopes = []
        for offset, event in enumerate(new_events, start=1):
            envelope = self._store.catalog.envelope(
                event,
                aggregate_id=aggregate_id,
                aggregate_version=expected_version + offset,
                org_path=org_path,
                actor=actor,
                correlation_id=correlation_id,
                causation_id=causation_id,
                occurred_at=occurred_at,
            )
            correlation_id = envelope.correlation_id
            envelopes.append(envelope)
        await self.append(envelopes, expected_version)
        return envelopes

    async def append(self, envelopes: Sequence[EventEnvelope], expected_version: int) -> None:
        """Append events of one aggregate if it is still at `expected_version`, else conflict."""
        if not envelopes:
            return
        first = envelopes[0]
        kind, ident = first.aggregate_type, first.aggregate_id
        for offset, envelope in enumerate(envelopes, start=1):
            if (envelope.aggregate_type, envelope.aggregate_id) != (kind, ident):
                raise ValueError("one append takes the events of one aggregate")
            if envelope.aggregate_version != expected_version + offset:
                raise ValueError("aggregate versions must follow the expected version without gaps")
        if expected_version > 0:
            # A new aggregate needs no look-up: its version 1 row clashes with any existing one.
            actual = await self.version_of(kind, ident)
            if actual != expected_version:
                raise ConcurrencyConflict(kind, ident, expected_version, actual)

        await self._insert(envelopes)

    async def append_new(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Append the first event of many new aggregates at once (a bulk import): one statement
        for the events and one for the outbox. A clash with an existing aggregate fails it all."""
        for envelope in envelopes:
            if envelope.aggregate_version != 1:
                raise ValueError("append_new takes the first event of new aggregates only")
        await self._insert(envelopes)

    async def append_batch(self, events: Sequence[EventEnvelope | EncodedEvent]) -> None:
        """Append events of many aggregates whose versions the caller read in this transaction
        (a ledger batch): one statement each for events and outbox, no version look-ups. A
        concurrent writer that got any of those versions first makes it all a conflict."""
        if events:
            await self._insert(events)

    async def _insert(self, events: Sequence[EventEnvelope | EncodedEvent]) -> None:
        schema, now, traceparent = self._store.schema, utcnow(), current_traceparent()
        encoded = [e if isinstance(e, EncodedEvent) else self._encoded(e) for e in events]
        event_rows = [
            (
                e.event_id, e.type, e.schema_version, e.aggregate_type, e.aggregate_id, e.aggregate_version,
                e.occurred_at, e.recorded_at, e.body,
            )
            for e in encoded
        ]  # fmt: skip
        outbox_rows = [(e.event_id, e.subject, e.body, now, traceparent) for e in encoded]
        try:
            await write_rows(self.conn, schema.events, _EVENT_COLUMNS, event_rows)
        except IntegrityError:
            # Another writer got there first; the unique index decided. The transaction is lost.
            first = events[0]
            raise ConcurrencyConflict(first.aggregate_type, first.aggregate_id, first.aggregate_version - 1, None) from None
        await write_rows(self.conn, schema.outbox, _OUTBOX_COLUMNS, outbox_rows)
        self.appended.extend(events)

    def _encoded(self, envelope: EventEnvelope) -> EncodedEvent:
        return EncodedEvent(
            str(envelope.event_id), envelope.type, envelope.schema_version, envelope.aggregate_type,
            envelope.aggregate_id, envelope.aggregate_version, envelope.occurred_at, envelope.recorded_at,
            envelope.correlation_id, self._store.catalog.subject_of(envelope), envelope.to_json(),
        )  # fmt: skip

    async def claim(self, consumer: str, event_id: UUID) -> bool:
        """Record that `consumer` applies this event; False if it already did (skip it)."""
        inbox = self._store.schema.inbox
        statement = (
            upsert(self.conn, inbox)
            .values(consumer=consumer, event_id=str(event_id), processed_at=utcnow())
            .on_conflict_do_nothing()
        )
        result = await self.conn.execute(statement)
        return result.rowcount == 1


class EventStore:
    def __init__(
        self,
        engine: AsyncEngine,
        schema: EventStoreSchema,
        catalog: EventCatalog = default_catalog,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.catalog = catalog
        self._commit_listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that appended events (the relay's wake-up)."""
        self._commit_listeners.append(listener)

    @asynccontextmanager
    async def transaction(self, *, one_trip: bool = False) -> AsyncIterator[Transaction]:
        """A write transaction. `one_trip`: its writes go to the database together with the
        next query or the commit (shared.db.writing_in_one_trip), for a hot command whose writes'
        results nobody reads; an append's clash with a concurrent one then shows at the commit,
        as the same ConcurrencyConflict."""
        tx: Transaction | None = None
        try:
            async with (writing_in_one_trip if one_trip else writing)(self.engine) as conn:
                tx = Transaction(conn, self)
                yield tx
        except IntegrityError as error:
            # A held-back append refused by the aggregate-version index (the only one it can hit
            # that a command does not check first): another writer took that version.
            if tx is None or not tx.appended or "aggregate_version" not in str(error.orig):
                raise
            clash = await self._taken(tx.appended)
            raise ConcurrencyConflict(clash.aggregate_type, clash.aggregate_id, clash.aggregate_version - 1, None) from None
        if tx.appended:
            for listener in self._commit_listeners:
                listener()

    async def _taken(self, appended: Sequence[EventEnvelope | EncodedEvent]) -> EventEnvelope | EncodedEvent:
        """Which of a failed transaction's appends another writer got to first (the error does
        not say): the first whose version now exists."""
        events = self.schema.events
        async with reading(self.engine) as conn:
            for envelope in appended:
                taken = await conn.scalar(
                    select(events.c.position).where(
                        events.c.aggregate_type == envelope.aggregate_type,
                        events.c.aggregate_id == envelope.aggregate_id,
                        events.c.aggregate_version == envelope.aggregate_version,
                    )
                )
                if taken is not None:
                    return envelope
        return appended[0]

    async def create_tables(self) -> None:
        """Create whatever tables of the schema's metadata are missing, as they are now: for
        tests and benchmarks on a store of their own. A service's store is migrated instead
        (shared.migrations; a database made this way is adopted there)."""
        async with writing(self.engine) as conn:
            await conn.run_sync(self.schema.metadata.create_all)

    async def load(self, aggregate_type: str, aggregate_id: str) -> list[EventEnvelope]:
        async with reading(self.engine) as conn:
            return await Transaction(conn, self).load(aggregate_type, aggregate_id)

    async def history(self, aggregate_type: str, aggregate_id: str, what: str | None = None) -> History:
        async with reading(self.engine) as conn:
            return await Transaction(conn, self).history(aggregate_type, aggregate_id, what)

    async def outbox_depth(self) -> int:
        outbox = self.schema.outbox
        async with reading(self.engine) as conn:
            return await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            ) or 0

    async def ping(self) -> None:
        async with reading(self.engine) as conn:
            await conn.execute(text("SELECT 1"))


