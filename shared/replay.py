"""Replay: read a stream in order from a stored position, for projections and rebuilds.

The fast reader is a pipelined pull on an ephemeral consumer: bounded memory, re-created at the
right sequence after any gap, about four times faster than a pull subscription's `fetch`. A
projection keeps, per generation, a checkpoint per stream (or per stream and district, for the
streams it splits by district) in the same transaction as its tables: it resumes where it
stopped, and a rebuild fills a new generation while the active one keeps serving, then swaps.
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
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, Protocol, TypeVar

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
    count = len(tokens)  # read twice per message in a rebuild: no list built to compare
    if count == 9:
        at = 5
    elif count >= 11:
        at = 7
    else:
        raise NotJSMessageError
    if tokens[0] != "$JS" or tokens[1] != "ACK":
        raise NotJSMessageError
    return int(tokens[at]), int(tokens[at + 1])


def stream_sequence(msg: Msg) -> int:
    return sequences(msg)[0]


def _pending_after(msg: Msg) -> int:
    """How many messages the consumer's filter still matched in the stream when this one was
    delivered (the reply subject's last number but one)."""
    tokens = (msg.reply or "").split(".")
    return int(tokens[8 if len(tokens) == 9 else 10])


def district_of(subject: str) -> str:
    """The district code an event's subject carries: `<context>.<district>.<aggregate>.<event>`."""
    return subject.split(".", 2)[1]


def partition_of(district: str, partitions: int) -> int:
    """Which of `partitions` shares a district falls to, for good: its code modulo the count (a
    city's district codes run in sequence, so its districts go round the shares), or a code's
    CRC-32 if it is not a number."""
    number = int(district) if district.isdigit() else zlib.crc32(district.encode())
    return number % partitions


async def district_counts(js: JetStreamContext, stream: str) -> dict[str, int]:
    """How many messages the stream holds per district code (from its subjects' counts)."""
    try:
        info = await js.stream_info(stream, subjects_filter=f"{stream.lower()}.*.>")
    except NotFoundError:
        return {}
    counts: dict[str, int] = {}
    for subject, count in (info.state.subjects or {}).items():
        district = district_of(subject)
        counts[district] = counts.get(district, 0) + count
    return counts


class _PipelinedPull:
    """An ephemeral pull consumer read through a core subscription, with pull requests kept in
    flight ahead of the reader (JETSTREAM.md measures ~90k msg/s, four times `fetch`).

    Memory is bounded by what is requested, never by how far the server could run ahead, so
    nothing is dropped as a slow consumer. Every delivery is checked for continuity: after any
    gap (a lost connection, a consumer the server deleted) the reader re-creates the consumer
    at the next sequence it needs.
    """

    def __init__(
        self, nc: Client, stream: str, subjects: Sequence[str], batch_size: int, expires_seconds: float
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream
        self.subjects = list(subjects)
        self.batch_size = batch_size
        self.expires_seconds = expires_seconds
        self.ready: deque[Msg] = deque()
        self.arrived = asyncio.Event()
        self.credit = 0  # messages requested and not yet delivered or expired
        self.last_response = time.monotonic()
        self.consumer = ""
        self.delivered = 0  # consumer sequence of the last delivery
        self.broken: str | None = None
        self.matching = 0  # messages the filter matched from the start sequence, as created
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
            filter_subject=None if self.subjects == [">"] or len(self.subjects) > 1 else self.subjects[0],
            filter_subjects=self.subjects if len(self.subjects) > 1 else None,  # NATS 2.10 and later
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=16,
        )
        info = await self.js.add_consumer(self.stream, config)
        self.consumer = info.name
        self.matching = info.num_pending or 0
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
    subject: str | Sequence[str] = ">",
    batch_size: int = 1000,
    max_wait_seconds: float = 0.05,
) -> AsyncIterator[list[Msg]]:
    """Yield the stream's messages from sequence `start` in order, in batches; with `since`,
    from the first one the stream stored at or after that time; with `subject` (one filter or
    several), only the messages it matches.

    With `stop`, ends after the message at that sequence, or after the last one the filter
    matches up to it (or at once if there is none); without it, follows the stream live until
    cancelled.
    """
    if stop is not None and (stop < start or await last_sequence(nc.jetstream(), stream) < start):
        return
    subjects = [subject] if isinstance(subject, str) else list(subject)
    reader = _PipelinedPull(nc, stream, subjects, batch_size, expires_seconds=1.0)
    next_sequence = start
    await reader.start(next_sequence, since)
    if stop is not None and not reader.matching:
        await reader.stop()
        return
    try:
        while True:
            batch: list[Msg] = []
            deadline: float | None = None
            while len(batch) < batch_size:
                while reader.ready and len(batch) < batch_size:
                    batch.append(reader.ready.popleft())
                if batch and stop is not None and (stream_sequence(batch[-1]) >= stop or not _pending_after(batch[-1])):
                    break  # at `stop`, or past the last message the filter matched
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
                ended = stop is not None and (last >= stop or not _pending_after(batch[-1]))
                if stream_sequence(batch[0]) < next_sequence:  # in order: only a resumed reader repeats
                    batch = [m for m in batch if stream_sequence(m) >= next_sequence]
                if stop is not None and last > stop:  # a filtered reader steps over `stop`
                    batch = [m for m in batch if stream_sequence(m) <= stop]
                if batch:
                    next_sequence = last + 1
                    yield batch
                if ended:
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


def _sequenced(msg: Msg, event: tuple[Any, Event]) -> _Decoded:
    return (stream_sequence(msg), *event)


async def _decode(
    js: JetStreamContext,
    batch: list[Msg],
    read: Read,
    consumer: str,
    keep: Callable[[Msg, tuple[Any, Event]], T] = _sequenced,  # type: ignore[assignment]
) -> list[T]:
    """The batch's events the consumer handles (`read` returns None for the others), each as
    `keep` makes it of its message (by default with its stream sequence, for a follower to skip
    what it applied); one it cannot read is dead-lettered, and the rest goes on (idempotent: a
    replay dead-letters it again under the same message id)."""
    decoded: list[T] = []
    for index, msg in enumerate(batch):
        if index % 100 == 99:
            await asyncio.sleep(0)  # let a commit in flight go on meanwhile
        try:
            event = read(msg.data)
            if event is not None:
                decoded.append(keep(msg, event))
        except EventRejected as rejected:
            with correlated(_correlation_in(msg.data)):
                await dead_letter(js, msg, consumer=consumer, reason=rejected.reason)
    return decoded


def _event_only(_msg: Msg, event: tuple[Any, Event]) -> tuple[Any, Event]:
    return event


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
    """Whether the tables are in the database with exactly these columns, each of them taking
    nulls or not as defined (or none of them is: a new generation). Key columns are left out of
    the nulls' comparison: backends report theirs differently."""
    inspector = inspect(conn)
    present = [table for table in tables if inspector.has_table(table.name)]
    if not present:
        return True

    def columns_of(table: Table) -> set[tuple[str, bool | None]]:
        keys = {column.name for column in table.primary_key}
        found = inspector.get_columns(table.name)
        return {(column["name"], None if column["name"] in keys else bool(column["nullable"])) for column in found}

    def defined(table: Table) -> set[tuple[str, bool | None]]:
        return {(column.name, None if column.primary_key else bool(column.nullable)) for column in table.columns}

    return len(present) == len(tables) and all(columns_of(table) == defined(table) for table in tables)


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
    envelope: a rebuild reads millions of them. It may also name `partitioned`: the contexts
    whose fold adds up the same however their events are split and in whatever order the
    parts are written (no state read across events; what is kept besides counters is added to,
    or kept by a rule that no order changes, such as the earliest time). A projector follows
    such a stream district by district, each in stream order, and rebuilds it in ranges of
    sequences folded side by side, by processes that each read a range unfiltered (a filtered
    reader makes the server scan the whole stream, and cost it twice a plain one's time)."""

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
Share = tuple[int, int]  # (partition, partitions): the districts with partition_of(code, partitions) == partition


class _Part(NamedTuple):
    """What one reader of a rebuild folds: `stream` from `start` to `stop`, its progress kept
    under the checkpoint `key` (the stream's, or `<stream>@<start>` for a range of a split
    stream, until the rebuild settles it: see `Projector._settle_ranges`)."""

    stream: str
    start: int
    stop: int
    key: str

    @property
    def name(self) -> str:
        return self.stream if self.key == self.stream else f"{self.stream} {self.start}-{self.stop}"

    @property
    def size(self) -> int:
        return max(self.stop - self.start + 1, 0)


# A rebuild cuts a split stream into this many ranges per process: parts taken in turn, largest
# first, then even out, and the last one leaves little of another process's time unused.
_RANGES_PER_PROCESS = 4


def _range_key(stream: str, start: int) -> str:
    """A rebuild's checkpoint of the range of a split stream from `start` (see `_Part`)."""
    return f"{stream}@{start}"


def _applied_through(ranges: Sequence[tuple[int, int]]) -> int:
    """How far a stream folded in ranges side by side is applied without a gap, from each
    range's (start, checkpoint); a range not yet committed has none."""
    reached = 0
    for start, sequence in sorted(ranges):
        if start > reached + 1:
            break
        reached = max(reached, sequence)
    return reached


def checkpoint_key(stream: str, district: str | None = None) -> str:
    """The `stream` column of a checkpoint: the stream's, or for a split stream one district's
    (`DISPATCH.370303`: every event of that district up to the sequence is applied)."""
    return stream if district is None else f"{stream}.{district}"


# A stream followed whole before it was split keeps where it had got to as `<stream>.*`, the
# position of every district without a checkpoint of its own yet (a rebuild, which reads a split
# stream in ranges, leaves its end there too); its own checkpoint is set past any sequence, so
# that a follower of the whole stream left running (a replica of the version before, during a
# rollout) finds every batch applied and folds nothing more.
_WHOLE = "*"
_RETIRED = 2**62


def projector_tables(metadata: MetaData) -> tuple[Table, Table]:
    """A projector's bookkeeping in its service's store (migrated with it, unlike the generations'
    tables): each projection's generations, which one is active, and how far each has applied
    each stream (or each district of a split stream, see `checkpoint_key`)."""
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
        discovery_seconds: float = 2.0,
    ) -> None:
        """`rebuild_processes` above 1 rebuilds in worker processes, which build the projection
        by its class with no arguments, read the default catalog, and connect to NATS with
        `nats_connect` (nats-py's `connect` arguments; by default the server `rebuild` is given).
        A follower of a split stream looks for districts new to it at least every
        `discovery_seconds` (every 0.1 s at first, then less and less often)."""
        self.projection = projection
        self.engine = engine
        self.catalog = catalog
        self.batch_size = batch_size
        self.rebuild_chunk = rebuild_chunk
        self.rebuild_processes = rebuild_processes
        self.nats_connect = nats_connect
        self.discovery_seconds = discovery_seconds
        self.split = {stream_name(context) for context in getattr(projection, "partitioned", ())}
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
        """The sequence up to which every event of the stream is applied, as the checkpoints
        show it: for a split stream the lowest of its districts' (a district's checkpoint moves
        with that district's events only, so this can trail the stream's end; `caught_up` asks
        the stream), or while a rebuild folds it in ranges, where they meet."""
        c = self.checkpoints.c
        async with reading(self.engine) as conn:
            rows = await conn.execute(
                select(c.stream, c.sequence).where(
                    c.projection == self.projection.name,
                    c.generation == generation,
                    (c.stream == stream) | c.stream.like(f"{stream}.%") | c.stream.like(f"{stream}@%"),
                )
            )
            found = dict(rows.all())
        ranges = [(int(key.partition("@")[2]), found.pop(key)) for key in list(found) if "@" in key]
        if ranges:
            return _applied_through(ranges)
        whole = found.pop(stream, 0)
        before_split = found.pop(checkpoint_key(stream, _WHOLE), None)
        if found:
            return min(found.values())
        return before_split if before_split is not None else whole

    async def caught_up(self, js: JetStreamContext, generation: int, stream: str) -> bool:
        """Whether every message the stream holds now is applied: for a split stream, whether
        each district's last message is at or before that district's checkpoint."""
        if stream not in self.split:
            return await self.checkpoint(generation, stream) >= await last_sequence(js, stream)
        districts = sorted(await district_counts(js, stream))
        async with reading(self.engine) as conn:
            done = await self._positions(conn, generation, stream, districts)
        for district in districts:
            last = await js.get_last_msg(stream, f"{stream.lower()}.{district}.>")
            if last.seq > done[checkpoint_key(stream, district)]:
                return False
        return True

    async def _positions(
        self, conn: AsyncConnection, generation: int, stream: str, districts: Sequence[str] | None
    ) -> dict[str, int]:
        """The checkpoints by key: the stream's, or (`districts`) each district's. A district
        without one yet takes the stream's, if any (a generation followed whole before its
        stream was split has applied every district up to it)."""
        c = self.checkpoints.c
        keys = [checkpoint_key(stream, d) for d in districts or ()]
        before_split = checkpoint_key(stream, _WHOLE)
        rows = await conn.execute(
            select(c.stream, c.sequence).where(
                c.projection == self.projection.name,
                c.generation == generation,
                c.stream.in_([stream, before_split, *keys]),
            )
        )
        found = dict(rows.all())
        whole = found.get(stream, 0)
        if districts is None:
            return {stream: whole}
        whole = found.get(before_split, whole)
        return {key: found.get(key, whole) for key in keys}

    async def _retire_whole(self, generation: int, stream: str) -> None:
        """Before a split stream's districts are followed: keep where the stream was followed
        whole to (see `_RETIRED`), under its checkpoint's lock, once."""
        async with writing(self.engine) as conn:
            await _hold_checkpoint(conn, f"{self.consumer_name}:{generation}:{checkpoint_key(stream)}")
            whole = (await self._positions(conn, generation, stream, None))[stream]
            if 0 < whole < _RETIRED:
                await self._store_checkpoints(
                    conn, generation, {checkpoint_key(stream, _WHOLE): whole, checkpoint_key(stream): _RETIRED}
                )

    # -- live ---------------------------------------------------------------------------------

    async def follow(self, nc: Client, context: str, share: Share | None = None) -> None:
        """Apply the stream of `context` to the active generation, live, until cancelled; a
        stale generation (see `setup`) is rebuilt first, by whichever follower comes first.

        A split stream is followed district by district with a checkpoint each, through one
        reader filtered on the districts of `share` (all of them without it); a district that
        appears later joins within `discovery_seconds`."""
        stream = stream_name(context)
        backoff = _Backoff()
        while True:
            try:
                async with self._rebuilding_stale:
                    if self.stale:
                        await self.rebuild(nc)
                        self.stale = False
                generation = await self.active_generation()
                if stream in self.split:
                    await self._follow_districts(nc, generation, stream, share, backoff)
                    continue
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

    async def _districts(self, js: JetStreamContext, stream: str, share: Share | None) -> list[str]:
        found = sorted(await district_counts(js, stream))
        return found if share is None else [d for d in found if partition_of(d, share[1]) == share[0]]

    async def _follow_districts(
        self, nc: Client, generation: int, stream: str, share: Share | None, backoff: _Backoff
    ) -> None:
        """Follow the share's districts of a split stream until a district joins the share or
        the generation changes (then returns, to be called again)."""
        js = nc.jetstream()
        districts = await self._districts(js, stream, share)
        if not districts:  # nothing to follow yet (a new city): look again soon
            await asyncio.sleep(min(self.discovery_seconds, 0.1))
            return
        await self._retire_whole(generation, stream)
        async with reading(self.engine) as conn:
            done = await self._positions(conn, generation, stream, districts)

        swapped = asyncio.Event()  # a rebuild made another generation the active one

        async def commit(batch: list[Msg], events: list[_Decoded], last: int) -> bool:
            applied = await self._apply_decoded(
                generation, stream, batch, events, live=True, districts=districts, last=last
            )
            if not applied:
                swapped.set()
            return applied

        async def apply_live() -> None:
            subjects = [f"{stream.lower()}.{district}.>" for district in districts]
            applying: asyncio.Future[bool] | None = None
            try:
                async for batch in read_stream(
                    nc, stream, start=min(done.values()) + 1, subject=subjects, batch_size=self.batch_size
                ):
                    backoff.reset()
                    # A district that joined is read from its own checkpoint: the others' events
                    # before theirs are skipped unread (their checkpoints only rise meanwhile).
                    key = partial(checkpoint_key, stream)
                    fresh = [m for m in batch if stream_sequence(m) > done[key(district_of(m.subject))]]
                    if not fresh:
                        continue
                    with _collecting_less():
                        events = await _decode(js, fresh, self._read, self.consumer_name)
                    # One commit at a time, in order, while the next batch is read and decoded; a
                    # commit under way ends even if the follower is cancelled meanwhile.
                    if applying is not None and not await asyncio.shield(applying):
                        return  # the generation changed
                    applying = asyncio.ensure_future(commit(fresh, events, stream_sequence(batch[-1])))
            finally:
                # Never two commits at once: the next round starts from what this one stored.
                if applying is not None and not applying.done():
                    await asyncio.wait([applying])

        async def new_district() -> None:
            # Soon after a change (a city's first events come district by district) more may
            # follow: look again after 0.1 s, then less often, up to `discovery_seconds`.
            delay = min(0.1, self.discovery_seconds)
            while set(await self._districts(js, stream, share)) <= set(districts):
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.discovery_seconds)

        following, watching = asyncio.ensure_future(apply_live()), asyncio.ensure_future(new_district())
        swapping = asyncio.ensure_future(swapped.wait())
        try:
            await asyncio.wait([following, watching, swapping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancelled(following, watching, swapping)
        if swapped.is_set():
            log.info("%s: generation changed, following the new one", self.consumer_name)
        for task in (following, watching):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

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
        With `rebuild_processes` above 1, the streams, and ranges of a split stream, are shared
        out among that many processes (each stream's fold is independent of the others', and a
        split stream's adds up the same in any parts, see `Projection`, so any sharing gives the
        same figures); a generation that fails is dropped.
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
            ranges = 1 if self.rebuild_processes == 1 else _RANGES_PER_PROCESS * self.rebuild_processes
            parts = await self._parts(nc.jetstream(), streams, ranges)
            if len(parts) > 1 and self.rebuild_processes > 1:
                await self._rebuild_in_processes(nc, generation, parts, progress)
            else:
                taking = iter(parts)
                await self._rebuild_parts(nc, generation, lambda: next(taking, None), progress)
        except Exception:
            await self._drop(generation)
            raise
        finally:
            self.rebuilding = None
        async with writing(self.engine) as conn:
            await self._settle_ranges(conn, generation, parts)
            previous = await self._active(conn)
            await conn.execute(
                update(self.generations)
                .where(self.generations.c.projection == self.projection.name)
                .values(active=(self.generations.c.generation == generation).cast(Integer))
            )
        if previous is not None and previous != generation:
            await self._drop(previous)
        return generation

    async def _parts(self, js: JetStreamContext, streams: Sequence[str], ranges: int) -> list[_Part]:
        """What a rebuild reads: each stream whole, in `streams`' order; with more than one
        range, a split stream cut into that many ranges of about equal length, and the parts
        largest first. Each stream's end is taken now: what comes after is the followers'."""
        parts: list[_Part] = []
        for stream in streams:
            stop = await last_sequence(js, stream)
            if stream not in self.split:
                parts.append(_Part(stream, 1, stop, checkpoint_key(stream)))
                continue
            length = max(-(-stop // ranges), 1)
            for at in range(1, stop + 1, length):
                parts.append(_Part(stream, at, min(at + length - 1, stop), _range_key(stream, at)))
        if ranges == 1:
            return parts
        return sorted(parts, key=lambda part: (-part.size, part.stream, part.start))

    async def _settle_ranges(self, conn: AsyncConnection, generation: int, parts: Sequence[_Part]) -> None:
        """Once every part is folded: each split stream applied up to its end, as the position
        of every district without a checkpoint of its own (`<stream>.*`, see `_WHOLE`), in
        place of its ranges' checkpoints."""
        ends = {checkpoint_key(part.stream, _WHOLE): part.stop for part in parts if part.stream in self.split}
        if not ends:
            return
        c = self.checkpoints.c
        await conn.execute(
            self.checkpoints.delete().where(
                c.projection == self.projection.name,
                c.generation == generation,
                c.stream.in_([part.key for part in parts if part.stream in self.split]),
            )
        )
        await self._store_checkpoints(conn, generation, ends)

    async def _rebuild_in_processes(
        self, nc: Client, generation: int, parts: Sequence[_Part], progress: Progress | None
    ) -> None:
        """Fold the parts here and in worker processes (a rebuild is CPU-bound: a process uses
        one core), reporting the workers' progress from the checkpoints they commit.

        Every process takes the parts in turn, largest first, through one shared counter, until
        none is left: a worker process starts a second or so after this one (a new interpreter
        and its imports), and the shares even out whatever the parts' sizes. A worker folds all
        it takes with one connection to NATS and one engine, as this process does."""
        parts = tuple(parts)
        connect = self.nats_connect or {"servers": [nc.connected_url.geturl()]}
        workers = min(self.rebuild_processes - 1, len(parts) - 1)
        context = multiprocessing.get_context("spawn")
        taken = context.Value("i", 0)
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_share_parts, initargs=(taken,)) as pool:
            job = _RebuildPart(
                type(self.projection), self.engine.url.render_as_string(hide_password=False), connect,
                generation, parts, self.batch_size, self.rebuild_chunk,
            )  # fmt: skip
            elsewhere = [loop.run_in_executor(pool, _rebuild_parts, job) for _ in range(workers)]
            here = asyncio.ensure_future(
                self._rebuild_parts(nc, generation, partial(_next_part, parts, taken), progress)
            )
            everything = [here, *elsewhere]
            waiting: set[asyncio.Future[Any]] = set(everything)
            reported: dict[str, int] = {}
            while waiting:
                _done, waiting = await asyncio.wait(waiting, timeout=1.0, return_when=asyncio.FIRST_EXCEPTION)
                failures = [job.exception() for job in everything if job.done() and job.exception()]
                if failures:
                    with taken.get_lock():
                        taken.value = len(parts)  # nothing more is taken: the generation is dropped
                    for process in list(getattr(pool, "_processes", {}).values()):
                        process.terminate()  # no use finishing the rest
                    for job in everything:
                        job.cancel()
                    await asyncio.wait(everything)
                    for job in everything:
                        if not job.cancelled():
                            job.exception()  # the terminated ones' BrokenProcessPool: known, not news
                    raise failures[0]
                if progress:
                    await self._report_progress(generation, parts, reported, progress)
        self.applied_total += sum(applied for applied, _peak in (job.result() for job in elsewhere))
        self.worker_peak_rss_mb = [peak for _applied, peak in (job.result() for job in elsewhere)]

    async def _report_progress(
        self, generation: int, parts: Sequence[_Part], reported: dict[str, int], progress: Progress
    ) -> None:
        """Report each part whose checkpoint moved since `reported` (by key) says."""
        c = self.checkpoints.c
        async with reading(self.engine) as conn:
            rows = await conn.execute(
                select(c.stream, c.sequence).where(c.projection == self.projection.name, c.generation == generation)
            )
            done = dict(rows.all())
        for part in parts:
            position = done.get(part.key, 0)
            if position > reported.get(part.key, 0):
                reported[part.key] = position
                progress(part.name, position - part.start + 1, part.size)

    async def _rebuild_parts(
        self, nc: Client, generation: int, take: Callable[[], _Part | None], progress: Progress | None
    ) -> None:
        """Fold the parts `take` gives until it gives None, each part's last transaction
        committing while the next part is read (parts write different checkpoints and rows)."""
        committing: asyncio.Future[None] | None = None
        with _collecting_less():
            try:
                while (part := take()) is not None:
                    committing = await self._rebuild_part(nc, generation, part, progress, committing)
                if committing is not None:
                    await committing
            finally:
                if committing is not None and not committing.done():
                    committing.cancel()

    async def _rebuild_part(
        self,
        nc: Client,
        generation: int,
        part: _Part,
        progress: Progress | None,
        committing: asyncio.Future[None] | None = None,
    ) -> asyncio.Future[None] | None:
        """Fold a part (a stream, or a range of a split one) into `generation`, `rebuild_chunk`
        events per transaction, with progress as (its name, events read of it, its length);
        return its last transaction, still committing (`committing` is the one before, perhaps
        another part's).

        A transaction's events are folded as they arrive and only their changes are held, not
        the events (a counter that a thousand events add to is one row to write); each
        transaction commits while the next events are read and decoded, and they are folded
        once it has committed (the fold reads the rows it wrote)."""
        stream, start, stop, key = part
        js = nc.jetstream()
        held: list[tuple[Any, Event]] = []  # read while a transaction commits, not folded yet
        window = _Window(self, generation)
        last = 0

        async def commit(through: int) -> None:
            nonlocal window, committing
            folded, count = await window.close()
            work = partial(self._store_rebuilt, generation, [key], through, folded, count)
            committing = asyncio.ensure_future(_until_done(work, f"{self.consumer_name} rebuilding"))
            window = _Window(self, generation)

        try:
            async for batch in read_stream(nc, stream, start=start, stop=stop, batch_size=self.batch_size):
                # Without their sequences: a rebuild reads each event once, and skips none.
                held += await _decode(js, batch, self._read, self.consumer_name, _event_only)
                last = stream_sequence(batch[-1])
                if progress:
                    progress(part.name, last - start + 1, part.size)
                if committing is not None:
                    if not committing.done() and len(held) < _HELD_WHILE_COMMITTING:
                        continue
                    await committing
                    committing = None
                await window.fold(held)
                held = []
                if window.count >= self.rebuild_chunk:
                    await commit(last)
            if committing is not None:
                await committing
            await window.fold(held)
            await commit(stop)
            return committing
        except BaseException:
            if committing is not None and not committing.done():
                committing.cancel()
            raise
        finally:
            await window.close()

    async def _store_rebuilt(
        self, generation: int, keys: Sequence[str], sequence: int, folded: Folded | None, count: int
    ) -> None:
        """A rebuild's transaction: what its events changed, and how far the stream (or each
        of its districts read) is applied."""
        async with writing(self.engine) as conn:
            if folded is not None:
                await folded.write(conn)
            await self._store_checkpoints(conn, generation, {key: sequence for key in keys})
        self.applied_total += count

    async def _store_checkpoints(self, conn: AsyncConnection, generation: int, positions: dict[str, int]) -> None:
        statement = upsert(conn, self.checkpoints)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["projection", "generation", "stream"], set_={"sequence": statement.excluded.sequence}
            ),
            [
                {"projection": self.projection.name, "generation": generation, "stream": key, "sequence": sequence}
                for key, sequence in sorted(positions.items())
            ],
        )

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
        self,
        nc: Client,
        generation: int,
        stream: str,
        batch: list[Msg],
        *,
        live: bool,
        districts: Sequence[str] | None = None,
        last: int | None = None,
    ) -> bool:
        """Apply a batch up to `last` (its last message's sequence by default): to the stream's
        checkpoint, or with `districts` to each of theirs (the batch then holds no other)."""
        events = await _decode(nc.jetstream(), batch, self._read, self.consumer_name)
        return await self._apply_decoded(generation, stream, batch, events, live=live, districts=districts, last=last)

    async def _apply_decoded(
        self,
        generation: int,
        stream: str,
        batch: list[Msg],
        events: list[_Decoded],
        *,
        live: bool,
        districts: Sequence[str] | None = None,
        last: int | None = None,
    ) -> bool:
        last = last or stream_sequence(batch[-1])
        of_district = None if districts is None else {stream_sequence(m): district_of(m.subject) for m in batch}
        with batch_span(
            f"{self.consumer_name} {stream}",
            _applied_headers(batch, events),
            _batch_attributes(self.consumer_name, stream, last, len(events)),
        ):
            # The store is away: hold the batch, keep the order.
            return await _until_done(
                lambda: self._apply(generation, stream, last, events, live, districts, of_district),
                f"{self.consumer_name} applying",
            )

    async def _apply(
        self,
        generation: int,
        stream: str,
        sequence: int,
        decoded: list[_Decoded],
        live: bool,
        districts: Sequence[str] | None = None,
        of_district: dict[int, str] | None = None,
    ) -> bool:
        # The fold reads through its own connection and the write lock is taken for the writes
        # alone: the rebuild processes of other streams, and the followers, write meanwhile.
        def key_of(seq: int) -> str:
            return checkpoint_key(stream, None if of_district is None else of_district[seq])

        async with reading(self.engine) as conn:
            if live and await self._active(conn) != generation:
                return False  # a rebuild swapped generations (and may drop this one)
            done = await self._positions(conn, generation, stream, districts)
            if sequence <= min(done.values()):
                return True
            # A re-created reader may deliver part of a batch again: skip what is applied.
            events = [(envelope, event) for seq, envelope, event in decoded if seq > done[key_of(seq)]]
            folded = await self.projection.fold(conn, generation, events) if events else None
        async with writing(self.engine) as conn:
            for key in sorted(done):  # in one order: two followers sharing a district never deadlock
                await _hold_checkpoint(conn, f"{self.consumer_name}:{generation}:{key}")
            if live and await self._active(conn) != generation:
                return False
            if await self._positions(conn, generation, stream, districts) != done:
                raise _Moved(f"{stream} of generation {generation} moved past {done} meanwhile: folding again")
            if folded is not None:
                await folded.write(conn)
            await self._store_checkpoints(
                conn, generation, {key: max(sequence, position) for key, position in done.items()}
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

    async def fold(self, events: list[tuple[Any, Event]]) -> None:
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


async def _cancelled(*tasks: asyncio.Future[Any]) -> None:
    """Cancel the tasks and wait until they have ended, cancelling again any that goes on: in
    Python 3.11 `asyncio.wait_for` (the reader waits with it) loses a cancellation that comes as
    what it waits for arrives, and a reader left running would never see a district join."""
    while running := [task for task in tasks if not task.done()]:
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=1.0)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the caller raises it if it matters


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
    """What a worker process needs to fold its share of the streams (and ranges) into a
    generation: the parts, which every process takes in turn (see `_next_part`)."""

    projection: Callable[[], Projection]
    database_url: str
    nats_connect: dict[str, Any]
    generation: int
    parts: tuple[_Part, ...]
    batch_size: int
    rebuild_chunk: int


_taken: Any = None  # in a worker process: how many of the parts are taken (a shared counter)


def _share_parts(taken: Any) -> None:
    """A worker process's start: the counter it takes parts by (only inherited, never pickled)."""
    global _taken
    _taken = taken


def _next_part(parts: Sequence[_Part], taken: Any) -> _Part | None:
    """The next part no process has taken yet, or None when every one is."""
    with taken.get_lock():
        index = taken.value
        taken.value = index + 1
    return parts[index] if index < len(parts) else None


def _rebuild_parts(part: _RebuildPart) -> tuple[int, float]:
    """A worker process's share of a rebuild: (events applied, its peak RSS in MB)."""
    return asyncio.run(_rebuild_parts_here(part))


async def _rebuild_parts_here(part: _RebuildPart) -> tuple[int, float]:
    engine = make_engine(part.database_url)
    nc = await nats.connect(**part.nats_connect)
    try:
        projector = Projector(part.projection(), engine, batch_size=part.batch_size, rebuild_chunk=part.rebuild_chunk)
        await projector._rebuild_parts(nc, part.generation, partial(_next_part, part.parts, _taken), None)
        return projector.applied_total, process_peak_rss_mb()
    finally:
        await nc.close()
        await engine.dispose()


def process_peak_rss_mb() -> float:
    """This process's peak resident memory, in MB: Linux's high-water mark of its own memory
    (which `/proc/self/clear_refs` can start afresh).
    Not `ru_maxrss`: a spawned process starts as a fork of its parent and keeps the parent's
    peak there through the exec that replaces it (a worker of a large parent would seem large)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Apply = Callable[[Transaction, list[tuple[FollowedEnvelope, Event]]], Awaitable[None]]


class StreamFollower:
    """Applies another context's stream to a service's own store, in stream order, a batch per
    event-store transaction together with the follower's checkpoint: exactly once, in order.

    For reactions where order and throughput matter more than a consumer per message (the points
    ledger: a million credits, each after the confirmation it depends on). A batch that fails is
    retried event by event; an event that fails `max_attempts` times while the store answers is
    dead-lettered with the reason and the stream goes on. While the store is away, it waits.

    `wants` makes it one partition of the stream (the ledger's by volunteer): of the events it
    handles, it applies those `wants` takes, judged from the envelope before the payload is
    validated (None: an envelope that cannot be read, which one partition must dead-letter); it
    still reads every message, so a skipped one costs its delivery and envelope.
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
        wants: Callable[[FollowedEnvelope | None], bool] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.apply = apply
        self.subject = subject
        self.handles = handles
        self.wants = wants
        self.catalog = catalog
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.applied_total = 0
        # Where its time goes, summed over its batches (for /metrics and the benchmarks): the
        # loop's decoding (while the previous batch is applied), applying (reading and deciding;
        # on PostgreSQL also writing) and committing (SQLite: the held writes and the COMMIT, in
        # the driver's thread). Applying and committing follow each other: they add up to the
        # time a batch takes.
        self.seconds = {"decoding": 0.0, "applying": 0.0, "committing": 0.0}
        self.checkpoints = store.schema.checkpoints  # created with the store's own tables

    def _read(self, raw: bytes) -> tuple[FollowedEnvelope, Event] | None:
        try:
            envelope = self.catalog.parse_followed(raw)
        except EventRejected:
            if self.wants is not None and not self.wants(None):
                return None  # another partition dead-letters it
            raise
        if not self.handles(envelope.type) or (self.wants is not None and not self.wants(envelope)):
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

        While one batch is applied (its reads are the store's time, off the event loop), the
        next is decoded (the loop's time): one commit at a time, in order, the two overlapping."""
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
                    started = time.perf_counter()
                    with _collecting_less():
                        decoded = await _decode(js, batch, self._read, self.name)
                    self.seconds["decoding"] += time.perf_counter() - started
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
                started = time.perf_counter()
                await self.apply(tx, events)
                self.seconds["applying"] += time.perf_counter() - started
            statement = upsert(tx.conn, self.checkpoints).values(consumer=self.name, stream=stream, sequence=sequence)
            await tx.conn.execute(
                statement.on_conflict_do_update(index_elements=["consumer", "stream"], set_={"sequence": sequence})
            )
            committing = time.perf_counter()
        self.seconds["committing"] += time.perf_counter() - committing
        self.applied_total += len(events)
