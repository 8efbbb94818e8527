"""The outbox relay: publishes committed outbox rows to JetStream, in order, pipelined.

Each message carries the `traceparent` stored with its row (the span that appended the event),
so that its consumers continue that trace (shared.subscriber).

A row is marked published only after JetStream acknowledged it (a duplicate ack means it was
already stored). A crash between publish and mark publishes the row again on restart with the
same `Nats-Msg-Id`, and JetStream drops it as a duplicate within the stream's window.

Replicas of a service share one outbox (PostgreSQL): a batch is published by one relay at a
time, the one that takes the outbox's transaction-level advisory lock, so that rows go out once
and in order; the others find the lock taken and leave the batch to it (their rows are in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import PubAck
from sqlalchemy import bindparam, select, text, update

from shared.db import reading, writing
from shared.envelope import utcnow
from shared.eventstore import EventStore
from shared.tracing import TRACEPARENT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySettings:
    batch_size: int = 1000
    ack_timeout_seconds: float = 5.0
    # Fallback poll for rows committed by another process (a CLI import, a replica).
    idle_poll_seconds: float = 1.0
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 10.0


@dataclass(frozen=True)
class OutboxRow:
    position: int
    event_id: str
    subject: str
    body: bytes
    traceparent: str | None = None


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        js: JetStreamContext,
        stream: str,
        settings: RelaySettings = RelaySettings(),
    ) -> None:
        self._store = store
        self._js = js
        self._stream = stream
        self._settings = settings
        self._wake = asyncio.Event()
        self._stopping = False
        self.published_total = 0
        # Test seam for crash tests: called after the acks, before the rows are marked.
        self.after_publish: Callable[[list[OutboxRow]], Awaitable[None]] | None = None
        store.on_commit(self.wake)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        delay = self._settings.retry_initial_seconds
        while not self._stopping:
            try:
                published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS or the database is away: keep rows, try later
                log.warning("outbox relay: %s; retrying in %.1fs", error, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self._settings.retry_max_seconds)
                continue
            delay = self._settings.retry_initial_seconds
            if published == 0:
                await self._sleep(self._settings.idle_poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; return how many were stored in the stream
        (0 also when another replica's relay is publishing a batch)."""
        async with self._turn() as ours:
            return await self._publish_batch() if ours else 0

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """Whether this relay may publish the next batch: on PostgreSQL, while it holds the
        outbox's lock (released with the transaction, or the connection if the process dies)."""
        engine = self._store.engine
        if engine.dialect.name != "postgresql":
            yield True
            return
        async with engine.connect() as conn, conn.begin():
            yield bool(await conn.scalar(_TRY_LOCK, {"key": f"outbox:{self._stream}"}))

    async def _publish_batch(self) -> int:
        rows = await self._unpublished(self._settings.batch_size)
        if not rows:
            return 0
        acks = await self._publish(rows)
        stored = []
        failure: BaseException | None = None
        for row, ack in zip(rows, acks, strict=True):
            if isinstance(ack, BaseException):
                failure = failure or ack
                continue
            stored.append((row, ack))
        if self.after_publish is not None:
            await self.after_publish([row for row, _ in stored])
        await self._mark_published(stored)
        self.published_total += len(stored)
        if failure is not None:
            raise RuntimeError(f"{len(rows) - len(stored)} of {len(rows)} publishes failed: {failure!r}")
        return len(stored)

    async def _unpublished(self, limit: int) -> list[OutboxRow]:
        outbox = self._store.schema.outbox
        async with reading(self._store.engine) as conn:
            result = await conn.execute(
                select(outbox.c.position, outbox.c.event_id, outbox.c.subject, outbox.c.body, outbox.c.traceparent)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.position)
                .limit(limit)
            )
            return [OutboxRow(*row) for row in result]

    async def _publish(self, rows: list[OutboxRow]) -> list[PubAck | BaseException]:
        # All publishes go out on one connection in outbox order before we wait for any ack;
        # one deadline covers the whole batch.
        futures = [
            await self._js.publish_async(row.subject, row.body, headers=_headers(row), stream=self._stream)
            for row in rows
        ]
        await asyncio.wait(futures, timeout=self._settings.ack_timeout_seconds)
        results: list[PubAck | BaseException] = []
        for future in futures:
            if not future.done():
                future.cancel()
                results.append(TimeoutError("no publish ack in time"))
            elif future.cancelled():
                results.append(asyncio.CancelledError())
            else:
                results.append(future.exception() or future.result())
        return results

    async def _mark_published(self, stored: list[tuple[OutboxRow, PubAck]]) -> None:
        if not stored:
            return
        outbox = self._store.schema.outbox
        now = utcnow()
        statement = (
            update(outbox)
            .where(outbox.c.position == bindparam("row_position"))
            .values(published_at=now, stream_sequence=bindparam("sequence"))
        )
        async with writing(self._store.engine) as conn:
            await conn.execute(
                statement, [{"row_position": row.position, "sequence": ack.seq} for row, ack in stored]
            )


_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")


def _headers(row: OutboxRow) -> dict[str, str]:
    if row.traceparent is None:
        return {"Nats-Msg-Id": row.event_id}
    return {"Nats-Msg-Id": row.event_id, TRACEPARENT: row.traceparent}
