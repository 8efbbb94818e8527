"""Replay: read a stream in order from a stored position, for projections and rebuilds.

The fast reader is a pipelined pull on an ephemeral consumer: bounded memory, re-created at the
right sequence after any gap, about four times faster than a pull subscription's `fetch`. A
projection keeps, per generation, a checkpoint per stream in the same transaction as its
tables: it resumes where it stopped, and a rebuild fills a new generation while the active one
keeps serving, then swaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import resource
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus import dead_letter, stream_name
from shared.catalog import Event, EventCatalog, EventRejected
from shared.catalog import catalog as default_catalog
from shared.db import make_engine, reading, upsert, writing
from shared.envelope import EnvelopeHeader, FollowedEnvelope
from shared.eventstore import EventStore, Transaction
from shared.logs import correlated, correlation_from
from shared.tracing import batch_span

log = logging.getLogger(__name__)
T = TypeVar("T")


async def last_sequence(js: JetStreamContext, stream: str) -> int:
    """The stream's last sequence; 0 for a stream that does not exist (yet)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return 0
    return info.state.last_seq


def sequences(msg: Msg) -> tuple[int, int]:
    """A JetStream message's (stream, consumer) sequences, read off its reply subject as nats-py's
    `Msg.metadata` does, without the dataclasses and datetime it builds (a fifth of a rebuild's
    time went there): `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>...`,
    or with a domain and an account hash after `ACK`."""
    tokens = (msg.reply or "").split(".")
    if tokens[:2] != ["$JS", "ACK"] or not (len(tokens) == 9 or len(tokens) >= 11):
        raise NotJSMessageError
    at = 5 if len(tokens) == 9 else 7
    return int(tokens[at]), int(tokens[at + 1])


def stream_sequence(msg: Msg) -> int:
    return sequences(msg)[0]


class _PipelinedPull:
    """An ephemeral pull consumer read through a core subscription, with pull requests kept in
    flight ahead of the reader (JETSTREAM.md measures ~90k msg/s, four times `fetch`).

    Memory is bounded by what is requested, never by how far the server could run ahead, so
    nothing is dropped as a slow consumer. Every delivery is checked for continuity: after any
    gap (a lost connection, a consumer the server deleted) the reader re-creates the consumer
    at the next sequence it needs.
    """

    def __init__(self, nc: Client, stream: str, subject: str, batch_size: int, expires_seconds: float) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream
        self.subject = subject
        self.batch_size = batch_size
        self.expires_seconds = expires_seconds
        self.ready: deque[Msg] = deque()
        self.arrived = asyncio.Event()
        self.credit = 0  # messages requested and not yet delivered or expired
        self.last_response = time.monotonic()
        self.consumer = ""
        self.delivered = 0  # consumer sequence of the last delivery
        self.broken: str | None = None
        self._sub: Any = None
        self._request_subject = ""
        self._inbox = ""

    async def start(self, sequence: int, since: datetime | None = None) -> None:
        self.ready.clear()
        self.credit, self.delivered, self.broken = 0, 0, None
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._receive)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if since else sequence,
            opt_start_time=since,
            # Named by us: NATS users may then create readers (`CONSUMER.CREATE.<stream>.<name>`)
            # while a deny keeps other services' durables out of reach (deploy/nats/users.conf).
            name=f"reader-{uuid.uuid4().hex}",
            ack_policy=AckPolicy.NONE,
            filter_subject=None if self.subject == ">" else self.subject,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=16,
        )
        info = await self.js.add_consumer(self.stream, config)
        self.consumer = info.name
        self._request_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        self.last_response = time.monotonic()
        await self.top_up()

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None
        if self.consumer:
            try:
                await self.js.delete_consumer(self.stream, self.consumer)
            except Exception:
                pass  # it expires by itself (inactive_threshold)
            self.consumer = ""

    async def top_up(self) -> None:
        # Two batches in flight: the server fills the next while we apply this one.
        while self.credit + len(self.ready) < 2 * self.batch_size:
            request = {"batch": self.batch_size, "expires": int(self.expires_seconds * 1e9)}
            await self.nc.publish(self._request_subject, json.dumps(request).encode(), reply=self._inbox)
            self.credit += self.batch_size

    async def _receive(self, msg: Msg) -> None:
        self.last_response = time.monotonic()
        status = msg.headers.get("Status") if msg.headers else None
        if self.broken:
            return  # after a gap nothing more is taken from this consumer
        if status is not None and not msg.data:
            if status in ("404", "408"):  # a request ended: what it did not deliver is no longer due
                self.credit -= int(msg.headers.get("Nats-Pending-Messages", self.batch_size))
            elif status == "100":
                pass  # heartbeat
            else:
                self.broken = f"{status} {msg.headers.get('Description', '')}".strip()
            self.arrived.set()
            return
        delivery = sequences(msg)[1]
        if delivery != self.delivered + 1:
            self.broken = f"delivery {delivery} after {self.delivered}"
            self.arrived.set()
            return
        self.delivered = delivery
        self.credit -= 1
        self.ready.append(msg)
        self.arrived.set()


async def read_stream(
    nc: Client,
    stream: str,
    *,
    start: int = 1,
    since: datetime | None = None,
    stop: int | None = None,
    subject: str = ">",
    batch_size: int = 1000,
    max_wait_seconds: float = 0.05,
) -> AsyncIterator[list[Msg]]:
    """Yield the stream's messages from sequence `start` in order, in batches; with `since`,
    from the first one the stream stored at or after that time.

    With `stop`, ends after the message at that sequence (or at once if the stream is shorter);
    without it, follows the stream live until cancelled.
    """
    if stop is not None and (stop < start or await last_sequence(nc.jetstream(), stream) < start):
        return
    reader = _PipelinedPull(nc, stream, subject, batch_size, expires_seconds=1.0)
    next_sequence = start
    await reader.start(next_sequence, since)
    try:
        while True:
            batch: list[Msg] = []
            deadline: float | None = None
            while len(batch) < batch_size:
                while reader.ready and len(batch) < batch_size:
                    batch.append(reader.ready.popleft())
                if batch and stream_sequence(batch[-1]) == stop:
                    break
                if reader.broken or time.monotonic() - reader.last_response > reader.expires_seconds + 5:
                    break
                await reader.top_up()
                if batch and deadline is None:
                    deadline = time.monotonic() + max_wait_seconds
                timeout = 1.0 if deadline is None else deadline - time.monotonic()
                if timeout <= 0:
                    break
                reader.arrived.clear()
                if reader.ready:
                    continue
                try:
                    await asyncio.wait_for(reader.arrived.wait(), timeout)
                except TimeoutError:
                    if batch:
                        break
            if batch:
                last = stream_sequence(batch[-1])
                if stream_sequence(batch[0]) < next_sequence:  # in order: only a resumed reader repeats
                    batch = [m for m in batch if stream_sequence(m) >= next_sequence]
                if batch:
                    next_sequence = last + 1
                    yield batch
                if stop is not None and last >= stop:
                    return
            silent = time.monotonic() - reader.last_response > reader.expires_seconds + 5
            if reader.broken or silent:
                log.warning("reading %s: %s; resuming at %d", stream, reader.broken or "no answer", next_sequence)
                await reader.stop()
                await asyncio.sleep(0.2)
                await reader.start(next_sequence, since if next_sequence == start else None)
            elif stop is not None and not reader.ready and await last_sequence(reader.js, stream) < stop:
                return  # the stream no longer reaches `stop`
    finally:
        await reader.stop()


class _Backoff:
    """Waits that double from 0.2 s up to 10 s while something keeps failing (NATS or the store
    is away); `reset` after a success."""

    def __init__(self) -> None:
        self.delay = 0.2

    def reset(self) -> None:
        self.delay = 0.2

    async def wait(self, what: str, error: BaseException) -> None:
        log.warning("%s: %r; again in %.1fs", what, error, self.delay)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 10.0)


async def _until_done(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `call` again, backing off, until it succeeds: a batch is held, never skipped."""
    backoff = _Backoff()
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await backoff.wait(what, error)


async def _decode(js: JetStreamContext, batch: list[Msg], read: Read, consumer: str) -> list[_Decoded]:
    """The batch's events the consumer handles (`read` returns None for the others); one it
    cannot read is dead-lettered, and the rest goes on (idempotent: a replay dead-letters it
    again under the same message id)."""
    decoded: list[_Decoded] = []
    for index, msg in enumerate(batch):
        if index % 100 == 99:
            await asyncio.sleep(0)  # let a commit in flight go on meanwhile
        try:
            event = read(msg.data)
            if event is not None:
                decoded.append((stream_sequence(msg), *event))
        except EventRejected as rejected:
            with correlated(_correlation_in(msg.data)):
                await dead_letter(js, msg, consumer=consumer, reason=rejected.reason)
    return decoded


def _correlation_in(raw: bytes) -> uuid.UUID | None:
    """The correlation id of an event that could not be read, if its JSON still names one (for
    the log line that dead-letters it)."""
    try:
        found = json.loads(raw).get("correlation_id")
    except (ValueError, AttributeError):
        return None
    return correlation_from(found) if isinstance(found, str) else None


def _applied_headers(batch: list[Msg], decoded: list[_Decoded]) -> Iterator[dict[str, str] | None]:
    """The headers of the batch's messages that `decoded` holds, lazily (both are in stream order,
    `decoded` a part of `batch`): a batch span links to the traces of the events applied."""
    messages = iter(batch)
    for sequence, *_ in decoded:
        for msg in messages:
            if stream_sequence(msg) == sequence:
                yield msg.headers
                break


def _batch_attributes(consumer: str, stream: str, last: int, applied: int) -> dict[str, str | int]:
    return {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": consumer,
        "messaging.batch.message_count": applied,
        "beacon.stream_sequence": last,
    }


def _tables_match(conn: Any, tables: Sequence[Table]) -> bool:
    """Whether the tables are in the database with exactly these columns (or none of them is:
    a new generation)."""
    inspector = inspect(conn)
    present = [table for table in tables if inspector.has_table(table.name)]
    if not present:
        return True
    return len(present) == len(tables) and all(
        {column["name"] for column in inspector.get_columns(table.name)} == {column.name for column in table.columns}
        for table in tables
    )


_collecting_less_depth = 0
_thresholds_before: tuple[int, ...] = ()


@contextmanager
def _collecting_less() -> Iterator[None]:
    """A rebuild (or a follower's batch) allocates millions of short-lived objects and keeps few
    of them: at the default thresholds the cyclic garbage collector runs every 700 allocations
    and took a fifth of it. Nests and overlaps (tasks of one loop): the last one out restores."""
    global _collecting_less_depth, _thresholds_before
    if not _collecting_less_depth:
        _thresholds_before = gc.get_threshold()
        gc.set_threshold(50_000, 50, 50)
    _collecting_less_depth += 1
    try:
        yield
    finally:
        _collecting_less_depth -= 1
        if not _collecting_less_depth:
            gc.set_threshold(*_thresholds_before)


class Projection(Protocol):
    """A read model built only from events; tables are named per generation.

    It is given each event's `EnvelopeHeader` (what, when, where) rather than the whole
    envelope: a rebuild reads millions of them."""

    name: str
    contexts: tuple[str, ...]

    def tables(self, generation: int) -> Sequence[Table]: ...

    async def fold(
        self, conn: AsyncConnection, generation: int, events: Sequence[tuple[EnvelopeHeader, Event]]
    ) -> Folded:
        """The events' changes, reading what it needs through `conn`, not yet written."""
        ...

    def handles(self, event_type: str) -> bool: ...


class Folded(Protocol):
    async def fold(self, events: Sequence[tuple[EnvelopeHeader, Event]]) -> None:
        """More events into the same changes (a rebuild folds a transaction's events as they
        arrive), reading through the connection the first were folded with."""
        ...

    async def write(self, conn: AsyncConnection) -> None: ...


Progress = Callable[[str, int, int], None]
_Decoded = tuple[int, Any, Event]  # stream sequence, header or envelope, payload
Read = Callable[[bytes], tuple[Any, Event] | None]


def projector_tables(metadata: MetaData) -> tuple[Table, Table]:
    """A projector's bookkeeping in its service's store (migrated with it, unlike the generations'
    tables): each projection's generations, which one is active, and how far each has applied
    each stream."""
    generations = Table(
        "projection_generations",
        metadata,
        Column("projection", String(100), primary_key=True),
        Column("generation", Integer, primary_key=True),
        Column("active", Integer, nullable=False, default=0),
    )
    checkpoints = Table(
        "projection_checkpoints",
        metadata,
        Column("projection", String(100), primary_key=True),
        Column("generation", Integer, primary_key=True),
        Column("stream", String(50), primary_key=True),
        Column("sequence", BigInteger, nullable=False),
    )
    return generations, checkpoints


class Projector:
    """Keeps one projection up to date from its streams, and rebuilds it from zero."""

    def __init__(
        self,
        projection: Projection,
        engine: AsyncEngine,
        catalog: EventCatalog = default_catalog,
        batch_size: int = 1000,
        rebuild_chunk: int = 100_000,
        rebuild_processes: int = 1,
        nats_connect: dict[str, Any] | None = None,
    ) -> None:
        """`rebuild_processes` above 1 rebuilds in worker processes, which build the projection
        by its class with no arguments, read the default catalog, and connect to NATS with
        `nats_connect` (nats-py's `connect` arguments; by default the server `rebuild` is given)."""
        self.projection = projection
        self.engine = engine
        self.catalog = catalog
        self.batch_size = batch_size
        self.rebuild_chunk = rebuild_chunk
        self.rebuild_processes = rebuild_processes
        self.nats_connect = nats_connect
        self.worker_peak_rss_mb: list[float] = []
        self.stale = False
        self._rebuilding_stale = asyncio.Lock()
        self.metadata = MetaData()
        self.generations, self.checkpoints = projector_tables(self.metadata)
        self.applied_total = 0
        self.rebuilding: int | None = None  # the generation a rebuild is filling (for /metrics)

    @property
    def consumer_name(self) -> str:
        return f"projection-{self.projection.name}"

    def _read(self, raw: bytes) -> tuple[EnvelopeHeader, Event] | None:
        header = self.catalog.parse_header(raw)
        if not self.projection.handles(header.type):
            return None  # its payload is never validated: most of a stream is not folded
        return header, self.catalog.payload_under(header)

    async def setup(self) -> int:
        """Create the bookkeeping tables and a first generation; return the active one.

        An active generation whose tables are not the projection's tables as this version of
        the code defines them (a column or table added since) is stale: the followers rebuild
        it before they follow (see `follow`)."""
        async with writing(self.engine) as conn:
            await conn.run_sync(self.metadata.create_all)
            active = await self._active(conn)
            if active is None:
                active = 1
                await conn.execute(
                    self.generations.insert().values(projection=self.projection.name, generation=1, active=1)
                )
            tables = self.projection.tables(active)
            self.stale = not await conn.run_sync(lambda sync: _tables_match(sync, tables))
            await self._create_tables(conn, active)
        if self.stale:
            log.warning(
                "%s: generation %d has tables of an earlier version: it will be rebuilt", self.consumer_name, active
            )
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

    async def follow(self, nc: Client, context: str) -> None:
        """Apply the stream of `context` to the active generation, live, until cancelled; a
        stale generation (see `setup`) is rebuilt first, by whichever follower comes first."""
        stream = stream_name(context)
        backoff = _Backoff()
        while True:
            try:
                async with self._rebuilding_stale:
                    if self.stale:
                        await self.rebuild(nc)
                        self.stale = False
                generation = await self.active_generation()
                start = await self.checkpoint(generation, stream) + 1
                async for batch in read_stream(nc, stream, start=start, batch_size=self.batch_size):
                    backoff.reset()
                    if not await self._apply_with_retry(nc, generation, stream, batch, live=True):
                        log.info("%s: generation changed, following the new one", self.consumer_name)
                        break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS or the store is away: resume from the checkpoint
                await backoff.wait(f"{self.consumer_name} on {stream}", error)

    # -- rebuild ------------------------------------------------------------------------------

    async def rebuild(
        self,
        nc: Client,
        *,
        stream_order: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Build a new generation from sequence 1 of every stream, then make it the active one.

        The active generation keeps serving meanwhile; the swap is one transaction. Followers
        notice the swap at their next batch and continue the new generation from its checkpoints.
        With `rebuild_processes` above 1, the streams are shared out among that many processes
        (each stream's fold is independent of the others', so any sharing gives the same
        figures); a generation that fails is dropped.
        """
        async with writing(self.engine) as conn:
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
        streams = [stream_name(context) for context in stream_order or self.projection.contexts]
        self.rebuilding = generation
        try:
            if self.rebuild_processes > 1 and len(streams) > 1:
                await self._rebuild_in_processes(nc, generation, streams, progress)
            else:
                with _collecting_less():
                    for stream in streams:
                        await self._rebuild_stream(nc, generation, stream, progress)
        except Exception:
            await self._drop(generation)
            raise
        finally:
            self.rebuilding = None
        async with writing(self.engine) as conn:
            previous = await self._active(conn)
            await conn.execute(
                update(self.generations)
                .where(self.generations.c.projection == self.projection.name)
                .values(active=(self.generations.c.generation == generation).cast(Integer))
            )
        if previous is not None and previous != generation:
            await self._drop(previous)
        return generation

    async def _rebuild_in_processes(
        self, nc: Client, generation: int, streams: list[str], progress: Progress | None
    ) -> None:
        """Fold one share of the streams here and the others in worker processes (a rebuild is
        CPU-bound: a process uses one core), reporting the workers' progress from the
        checkpoints they commit."""
        lengths = {stream: await last_sequence(nc.jetstream(), stream) for stream in streams}
        shares: list[list[str]] = [[] for _ in range(min(self.rebuild_processes, len(streams)))]
        for stream in sorted(streams, key=lambda s: -lengths[s]):  # longest first, to the least loaded
            min(shares, key=lambda share: sum(lengths[s] for s in share)).append(stream)
        here, elsewhere = shares[0], [share for share in shares[1:] if share]
        connect = self.nats_connect or {"servers": [nc.connected_url.geturl()]}
        parts = [
            _RebuildPart(
                type(self.projection), self.engine.url.render_as_string(hide_password=False), connect,
                generation, tuple(share), self.batch_size, self.rebuild_chunk,
            )
            for share in elsewhere
        ]  # fmt: skip

        async def fold_here() -> None:
            for stream in here:
                await self._rebuild_stream(nc, generation, stream, progress)

        if not parts:  # every stream fell to this process's share (the others are empty)
            await fold_here()
            return
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [asyncio.ensure_future(loop.run_in_executor(pool, _rebuild_part, part)) for part in parts]
            everything = [asyncio.ensure_future(fold_here()), *jobs]
            waiting = set(everything)
            while waiting:
                _done, waiting = await asyncio.wait(waiting, timeout=1.0, return_when=asyncio.FIRST_EXCEPTION)
                failures = [job.exception() for job in everything if job.done() and job.exception()]
                if failures:
                    for process in list(getattr(pool, "_processes", {}).values()):
                        process.terminate()  # the generation is dropped: no use finishing the rest
                    everything[0].cancel()
                    await asyncio.wait(everything)
                    for job in everything:
                        if not job.cancelled():
                            job.exception()  # the terminated ones' BrokenProcessPool: known, not news
                    raise failures[0]
                if progress:
                    for share in elsewhere:
                        for stream in share:
                            progress(stream, await self.checkpoint(generation, stream), lengths[stream])
        results = [job.result() for job in jobs]
        self.applied_total += sum(applied for applied, _ in results)
        self.worker_peak_rss_mb = [peak for _, peak in results]

    async def _rebuild_stream(self, nc: Client, generation: int, stream: str, progress: Progress | None) -> None:
        """Fold the whole stream into `generation`, `rebuild_chunk` events per transaction.

        A transaction's events are folded as they arrive and only their changes are held, not
        the events (a counter that a thousand events add to is one row to write); each
        transaction commits while the next events are read and decoded, and they are folded
        once it has committed (the fold reads the rows it wrote)."""
        js = nc.jetstream()
        stop = await last_sequence(js, stream)
        held: list[_Decoded] = []  # read while a transaction commits, not folded yet
        window = _Window(self, generation)
        committing: asyncio.Future[None] | None = None
        last = 0

        async def commit() -> None:
            nonlocal window, committing
            folded, count = await window.close()
            work = partial(self._store_rebuilt, generation, stream, last, folded, count)
            committing = asyncio.ensure_future(_until_done(work, f"{self.consumer_name} rebuilding"))
            window = _Window(self, generation)

        try:
            async for batch in read_stream(nc, stream, start=1, stop=stop, batch_size=self.batch_size):
                held += await _decode(js, batch, self._read, self.consumer_name)
                last = stream_sequence(batch[-1])
                if progress:
                    progress(stream, last, stop)
                if committing is not None:
                    if not committing.done() and len(held) < _HELD_WHILE_COMMITTING and last < stop:
                        continue
                    await committing
                    committing = None
                await window.fold(held)
                held = []
                if window.count >= self.rebuild_chunk or last >= stop:
                    await commit()
            if held or window.count:  # the stream ended short of `stop`
                if committing is not None:
                    await committing
                await window.fold(held)
                await commit()
            if committing is not None:
                await committing
        finally:
            await window.close()
            if committing is not None and not committing.done():
                committing.cancel()

    async def _store_rebuilt(
        self, generation: int, stream: str, sequence: int, folded: Folded | None, count: int
    ) -> None:
        """A rebuild's transaction: what its events changed, and how far the stream is applied."""
        async with writing(self.engine) as conn:
            if folded is not None:
                await folded.write(conn)
            statement = upsert(conn, self.checkpoints).values(
                projection=self.projection.name, generation=generation, stream=stream, sequence=sequence
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["projection", "generation", "stream"], set_={"sequence": sequence}
                )
            )
        self.applied_total += count

    async def _drop(self, generation: int) -> None:
        tables = self.projection.tables(generation)
        async with writing(self.engine) as conn:
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
        self, nc: Client, generation: int, stream: str, batch: list[Msg], *, live: bool
    ) -> bool:
        events = await _decode(nc.jetstream(), batch, self._read, self.consumer_name)
        last = stream_sequence(batch[-1])
        with batch_span(
            f"{self.consumer_name} {stream}",
            _applied_headers(batch, events),
            _batch_attributes(self.consumer_name, stream, last, len(events)),
        ):
            # The store is away: hold the batch, keep the order.
            return await _until_done(
                lambda: self._apply(generation, stream, last, events, live), f"{self.consumer_name} applying"
            )

    async def _apply(self, generation: int, stream: str, sequence: int, decoded: list[_Decoded], live: bool) -> bool:
        # The fold reads through its own connection and the write lock is taken for the writes
        # alone: the rebuild processes of other streams, and the followers, write meanwhile.
        async with reading(self.engine) as conn:
            if live and await self._active(conn) != generation:
                return False  # a rebuild swapped generations (and may drop this one)
            done = await self._checkpoint(conn, generation, stream)
            if sequence <= done:
                return True
            # A re-created reader may deliver part of a batch again: skip what is applied.
            events = [(envelope, event) for seq, envelope, event in decoded if seq > done]
            folded = await self.projection.fold(conn, generation, events) if events else None
        async with writing(self.engine) as conn:
            await _hold_checkpoint(conn, f"{self.consumer_name}:{generation}:{stream}")
            if live and await self._active(conn) != generation:
                return False
            if await self._checkpoint(conn, generation, stream) != done:
                raise _Moved(f"{stream} of generation {generation} moved past {done} meanwhile: folding again")
            if folded is not None:
                await folded.write(conn)
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


_HELD_WHILE_COMMITTING = 10_000  # decoded events a rebuild holds while a transaction commits


class _Window:
    """The events of one rebuild transaction, folded as they arrive: the fold's changes, and the
    connection it reads through, open until the transaction is written."""

    def __init__(self, projector: Projector, generation: int) -> None:
        self.projector, self.generation = projector, generation
        self.folded: Folded | None = None
        self.count = 0
        self._reading = contextlib.AsyncExitStack()

    async def fold(self, decoded: list[_Decoded]) -> None:
        events = [(header, event) for _, header, event in decoded]
        if self.folded is None:
            conn = await self._reading.enter_async_context(reading(self.projector.engine))
            self.folded = await self.projector.projection.fold(conn, self.generation, events)
        elif events:
            await self.folded.fold(events)
        self.count += len(events)

    async def close(self) -> tuple[Folded | None, int]:
        """The changes folded, the reads done (the changes are written through another
        connection, which takes the write lock)."""
        await self._reading.aclose()
        return self.folded, self.count


class _Moved(Exception):
    """A stream's checkpoint moved between a fold and its write (another replica's follower
    committed the batch first): the batch is folded again from the new checkpoint."""


_CHECKPOINT_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def _hold_checkpoint(conn: AsyncConnection, consumer: str) -> None:
    """Be the only writer of this checkpoint until the transaction ends. On PostgreSQL two
    replicas following one stream would otherwise both read it unchanged, both apply the batch
    and both move it (an advisory lock also covers a checkpoint row not written yet, which
    SELECT ... FOR UPDATE cannot). SQLite's BEGIN IMMEDIATE already lets one writer in at a time."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_CHECKPOINT_LOCK, {"key": f"checkpoint:{consumer}"})


@dataclass(frozen=True)
class _RebuildPart:
    """What a worker process needs to fold its share of the streams into a generation."""

    projection: Callable[[], Projection]
    database_url: str
    nats_connect: dict[str, Any]
    generation: int
    streams: tuple[str, ...]
    batch_size: int
    rebuild_chunk: int


def _rebuild_part(part: _RebuildPart) -> tuple[int, float]:
    """A worker process's share of a rebuild: (events applied, its peak RSS in MB)."""
    return asyncio.run(_rebuild_part_here(part))


async def _rebuild_part_here(part: _RebuildPart) -> tuple[int, float]:
    engine = make_engine(part.database_url)
    nc = await nats.connect(**part.nats_connect)
    try:
        projector = Projector(part.projection(), engine, batch_size=part.batch_size, rebuild_chunk=part.rebuild_chunk)
        with _collecting_less():
            for stream in part.streams:
                await projector._rebuild_stream(nc, part.generation, stream, None)
        return projector.applied_total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        await nc.close()
        await engine.dispose()


Apply = Callable[[Transaction, list[tuple[FollowedEnvelope, Event]]], Awaitable[None]]


class StreamFollower:
    """Applies another context's stream to a service's own store, in stream order, a batch per
    event-store transaction together with the follower's checkpoint: exactly once, in order.

    For reactions where order and throughput matter more than a consumer per message (the points
    ledger: a million credits, each after the confirmation it depends on). A batch that fails is
    retried event by event; an event that fails `max_attempts` times while the store answers is
    dead-lettered with the reason and the stream goes on. While the store is away, it waits.
    """

    def __init__(
        self,
        name: str,
        store: EventStore,
        apply: Apply,
        *,
        subject: str = ">",
        handles: Callable[[str], bool] = lambda _: True,
        catalog: EventCatalog = default_catalog,
        batch_size: int = 1000,
        max_attempts: int = 5,
    ) -> None:
        self.name = name
        self.store = store
        self.apply = apply
        self.subject = subject
        self.handles = handles
        self.catalog = catalog
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.applied_total = 0
        self.checkpoints = store.schema.checkpoints  # created with the store's own tables

    def _read(self, raw: bytes) -> tuple[FollowedEnvelope, Event] | None:
        envelope = self.catalog.parse_followed(raw)
        if not self.handles(envelope.type):
            return None
        return envelope, self.catalog.payload_under(envelope)

    async def checkpoint(self, stream: str) -> int:
        async with reading(self.store.engine) as conn:
            return await self._checkpoint(conn, stream)

    async def _checkpoint(self, conn: AsyncConnection, stream: str) -> int:
        c = self.checkpoints.c
        value = await conn.scalar(select(c.sequence).where(c.consumer == self.name, c.stream == stream))
        return value or 0

    async def follow(self, nc: Client, context: str) -> None:
        """Apply the stream of `context` from the checkpoint on, live, until cancelled.

        While one batch commits (SQLite's or the network's time, off the event loop), the next
        is decoded (the loop's time): one commit at a time, in order, the two overlapping."""
        stream = stream_name(context)
        js = nc.jetstream()
        backoff = _Backoff()
        while True:
            applying: asyncio.Future[None] | None = None
            try:
                start = await self.checkpoint(stream) + 1
                async for batch in read_stream(
                    nc, stream, start=start, subject=self.subject, batch_size=self.batch_size
                ):
                    with _collecting_less():
                        decoded = await _decode(js, batch, self._read, self.name)
                    if applying is not None:
                        await applying
                    applying = asyncio.ensure_future(self._apply(js, stream, batch, decoded))
                    backoff.reset()
            except asyncio.CancelledError:
                if applying is not None:
                    applying.cancel()
                raise
            except Exception as error:  # NATS or the store is away: resume from the checkpoint
                await backoff.wait(f"{self.name} on {stream}", error)
            finally:
                # Never two commits at once: the next round starts from what this one stored.
                if applying is not None and not applying.done():
                    await asyncio.wait([applying])

    async def _apply(self, js: JetStreamContext, stream: str, batch: list[Msg], decoded: list[_Decoded]) -> None:
        last = stream_sequence(batch[-1])
        carried = _applied_headers(batch, decoded)
        with batch_span(f"{self.name} {stream}", carried, _batch_attributes(self.name, stream, last, len(decoded))):
            try:
                with _collecting_less():
                    await self._commit(stream, last, decoded)
            except Exception as error:
                log.warning("%s: a batch failed (%r); applying its events one by one", self.name, error)
                messages = {stream_sequence(msg): msg for msg in batch}
                for item in decoded:
                    await self._one(js, stream, messages[item[0]], item)
                await self._store_checkpoint(stream, last)

    async def _one(self, js: JetStreamContext, stream: str, msg: Msg, item: _Decoded) -> None:
        attempt, backoff = 0, _Backoff()
        # Its retries' and dead-lettering's log lines carry the event's correlation id.
        with correlated(item[1].correlation_id):
            while True:
                try:
                    await self._commit(stream, item[0], [item])
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if await self._store_answers():  # the event fails, not the store: count it
                        attempt += 1
                        if attempt >= self.max_attempts:
                            reason = f"failed {attempt} times, last: {error!r}"
                            await dead_letter(js, msg, consumer=self.name, reason=reason)
                            await self._store_checkpoint(stream, item[0])
                            return
                    await backoff.wait(f"{self.name} applying #{item[0]}", error)

    async def _store_checkpoint(self, stream: str, sequence: int) -> None:
        await _until_done(lambda: self._commit(stream, sequence, []), f"{self.name} storing its checkpoint")

    async def _store_answers(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
            return True
        except Exception:
            return False

    async def _commit(self, stream: str, sequence: int, decoded: list[_Decoded]) -> None:
        # In one trip: on SQLite the batch's writes go with the COMMIT, while the loop decodes
        # the next batch (`apply` must not need a write's row count).
        async with self.store.transaction(one_trip=True) as tx:
            await _hold_checkpoint(tx.conn, f"{self.name}:{stream}")
            done = await self._checkpoint(tx.conn, stream)
            if sequence <= done:
                return
            # A re-created reader may deliver part of a batch again: skip what is applied.
            events = [(envelope, event) for seq, envelope, event in decoded if seq > done]
            if events:
                await self.apply(tx, events)
            statement = upsert(tx.conn, self.checkpoints).values(consumer=self.name, stream=stream, sequence=sequence)
            await tx.conn.execute(
                statement.on_conflict_do_update(index_elements=["consumer", "stream"], set_={"sequence": sequence})
            )
        self.applied_total += len(events)
