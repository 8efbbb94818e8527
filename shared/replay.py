"""Replay: read a stream in order from a stored position, for projections and rebuilds.

The fast reader is an ordered consumer (an ephemeral push consumer with flow control that the
client re-creates at the right sequence after any gap); it reads about four times faster than a
pull subscription's `fetch`. A projection keeps, per generation, a checkpoint per stream in the
same transaction as its tables: it resumes where it stopped, and a rebuild fills a new
generation while the active one keeps serving, then swaps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus import dead_letter, stream_name
from shared.catalog import Event, EventCatalog, EventRejected
from shared.catalog import catalog as default_catalog
from shared.db import reading, upsert
from shared.envelope import EventEnvelope

log = logging.getLogger(__name__)


async def last_sequence(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return info.state.last_seq


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    start: int = 1,
    stop: int | None = None,
    subject: str = ">",
    batch_size: int = 1000,
    max_wait_seconds: float = 0.05,
) -> AsyncIterator[list[Msg]]:
    """Yield the stream's messages from sequence `start` in order, in batches.

    With `stop`, ends after the message at that sequence (or at once if the stream is shorter);
    without it, follows the stream live until cancelled.
    """
    if stop is not None and stop < start:
        return
    sub = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
        idle_heartbeat=2.0,
        pending_msgs_limit=batch_size * 20,
        pending_bytes_limit=64 * 1024 * 1024,
    )
    try:
        while True:
            try:
                first = await sub.next_msg(timeout=1.0 if stop is None else 5.0)
            except NatsTimeout:
                if stop is not None and await last_sequence(js, stream) < stop:
                    return  # the stream no longer reaches `stop` (cannot shrink, but be safe)
                continue
            batch = [first]
            deadline = time.monotonic() + max_wait_seconds
            while len(batch) < batch_size and batch[-1].metadata.sequence.stream != stop:
                if sub.pending_msgs == 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await sub.next_msg(timeout=remaining))
                    except NatsTimeout:
                        break
                else:
                    batch.append(await sub.next_msg(timeout=0.5))
            yield batch
            if stop is not None and batch[-1].metadata.sequence.stream >= stop:
                return
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the connection may be closing with us
            pass


class Projection(Protocol):
    """A read model built only from events; tables are named per generation."""

    name: str
    contexts: tuple[str, ...]

    def tables(self, generation: int) -> Sequence[Table]: ...

    async def apply(
        self, conn: AsyncConnection, generation: int, events: Sequence[tuple[EventEnvelope, Event]]
    ) -> None: ...

    def handles(self, event_type: str) -> bool: ...


Progress = Callable[[str, int, int], None]
_Decoded = tuple[int, EventEnvelope, Event]


class Projector:
    """Keeps one projection up to date from its streams, and rebuilds it from zero."""

    def __init__(
        self,
        projection: Projection,
        engine: AsyncEngine,
        catalog: EventCatalog = default_catalog,
        batch_size: int = 1000,
    ) -> None:
        self.projection = projection
        self.engine = engine
        self.catalog = catalog
        self.batch_size = batch_size
        self.metadata = MetaData()
        self.generations = Table(
            "projection_generations",
            self.metadata,
            Column("projection", String(100), primary_key=True),
            Column("generation", Integer, primary_key=True),
            Column("active", Integer, nullable=False, default=0),
        )
        self.checkpoints = Table(
            "projection_checkpoints",
            self.metadata,
            Column("projection", String(100), primary_key=True),
            Column("generation", Integer, primary_key=True),
            Column("stream", String(50), primary_key=True),
            Column("sequence", BigInteger, nullable=False),
        )
        self.applied_total = 0

    @property
    def consumer_name(self) -> str:
        return f"projection-{self.projection.name}"

    async def setup(self) -> int:
        """Create the bookkeeping tables and a first generation; return the active one."""
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)
            active = await self._active(conn)
            if active is None:
                active = 1
                await conn.execute(
                    self.generations.insert().values(projection=self.projection.name, generation=1, active=1)
                )
            await self._create_tables(conn, active)
        return active

    async def active_generation(self) -> int:
        async with reading(self.engine) as conn:
            active = await self._active(conn)
        if active is None:
            raise RuntimeError(f"projection {self.projection.name} is not set up")
        return active

    async def _active(self, conn: AsyncConnection) -> int | None:
        return await conn.scalar(
            select(self.generations.c.generation).where(
                self.generations.c.projection == self.projection.name, self.generations.c.active == 1
            )
        )

    async def _create_tables(self, conn: AsyncConnection, generation: int) -> None:
        tables = self.projection.tables(generation)
        await conn.run_sync(lambda sync: tables[0].metadata.create_all(sync, tables=list(tables)))

    async def checkpoint(self, generation: int, stream: str) -> int:
        async with reading(self.engine) as conn:
            return await self._checkpoint(conn, generation, stream)

    async def _checkpoint(self, conn: AsyncConnection, generation: int, stream: str) -> int:
        value = await conn.scalar(
            select(self.checkpoints.c.sequence).where(
                self.checkpoints.c.projection == self.projection.name,
                self.checkpoints.c.generation == generation,
                self.checkpoints.c.stream == stream,
            )
        )
        return value or 0

    # -- live ---------------------------------------------------------------------------------

    async def follow(self, js: JetStreamContext, context: str) -> None:
        """Apply the stream of `context` to the active generation, live, until cancelled."""
        stream = stream_name(context)
        delay = 0.2
        while True:
            try:
                generation = await self.active_generation()
                start = await self.checkpoint(generation, stream) + 1
                async for batch in read_stream(js, stream, start=start, batch_size=self.batch_size):
                    delay = 0.2
                    if not await self._apply_with_retry(js, generation, stream, batch, live=True):
                        log.info("%s: generation changed, following the new one", self.consumer_name)
                        break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS or the store is away: resume from the checkpoint
                log.warning("%s on %s: %r; resuming in %.1fs", self.consumer_name, stream, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- rebuild ------------------------------------------------------------------------------

    async def rebuild(
        self,
        js: JetStreamContext,
        *,
        stream_order: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Build a new generation from sequence 1 of every stream, then make it the active one.

        The active generation keeps serving meanwhile; the swap is one transaction. Followers
        notice the swap at their next batch and continue the new generation from its checkpoints.
        """
        async with self.engine.begin() as conn:
            newest = await conn.scalar(
                select(func.max(self.generations.c.generation)).where(
                    self.generations.c.projection == self.projection.name
                )
            )
            generation = (newest or 0) + 1
            await conn.execute(
                self.generations.insert().values(projection=self.projection.name, generation=generation, active=0)
            )
            await self._create_tables(conn, generation)
        for context in stream_order or self.projection.contexts:
            stream = stream_name(context)
            stop = await last_sequence(js, stream)
            async for batch in read_stream(js, stream, start=1, stop=stop, batch_size=self.batch_size):
                await self._apply_with_retry(js, generation, stream, batch, live=False)
                if progress:
                    progress(stream, batch[-1].metadata.sequence.stream, stop)
        async with self.engine.begin() as conn:
            previous = await self._active(conn)
            await conn.execute(
                update(self.generations)
                .where(self.generations.c.projection == self.projection.name)
                .values(active=(self.generations.c.generation == generation).cast(Integer))
            )
        if previous is not None and previous != generation:
            await self._drop(previous)
        return generation

    async def _drop(self, generation: int) -> None:
        tables = self.projection.tables(generation)
        async with self.engine.begin() as conn:
            await conn.run_sync(lambda sync: tables[0].metadata.drop_all(sync, tables=list(tables)))
            await conn.execute(
                self.checkpoints.delete().where(
                    self.checkpoints.c.projection == self.projection.name,
                    self.checkpoints.c.generation == generation,
                )
            )
            await conn.execute(
                self.generations.delete().where(
                    self.generations.c.projection == self.projection.name,
                    self.generations.c.generation == generation,
                )
            )

    # -- applying -----------------------------------------------------------------------------

    async def _apply_with_retry(
        self, js: JetStreamContext, generation: int, stream: str, batch: list[Msg], *, live: bool
    ) -> bool:
        events = await self._decode(js, batch)
        delay = 0.2
        while True:
            try:
                return await self._apply(generation, stream, batch[-1].metadata.sequence.stream, events, live)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store is away: hold the batch, keep the order
                log.warning("%s: applying failed (%r); retrying in %.1fs", self.consumer_name, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _decode(self, js: JetStreamContext, batch: list[Msg]) -> list[_Decoded]:
        events = []
        for msg in batch:
            try:
                envelope = self.catalog.parse_envelope(msg.data)
                if not self.projection.handles(envelope.type):
                    continue
                events.append((msg.metadata.sequence.stream, envelope, self.catalog.payload_of(envelope)))
            except EventRejected as rejected:
                # Parked, not applied; the replay goes on. Idempotent, so a rebuild re-parks safely.
                await dead_letter(js, msg, consumer=self.consumer_name, reason=rejected.reason)
        return events

    async def _apply(
        self, generation: int, stream: str, sequence: int, decoded: list[_Decoded], live: bool
    ) -> bool:
        async with self.engine.begin() as conn:
            if live and await self._active(conn) != generation:
                return False
            done = await self._checkpoint(conn, generation, stream)
            if sequence <= done:
                return True
            # A re-created reader may deliver part of a batch again: skip what is applied.
            events = [(envelope, event) for seq, envelope, event in decoded if seq > done]
            if events:
                await self.projection.apply(conn, generation, events)
            statement = upsert(conn, self.checkpoints).values(
                projection=self.projection.name, generation=generation, stream=stream, sequence=sequence
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["projection", "generation", "stream"], set_={"sequence": sequence}
                )
            )
        self.applied_total += len(events)
        return True


