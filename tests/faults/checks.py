"""What a fault run is checked against: the streams read whole, the services' own stores, and
how far every consumer has come."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.points.subscribers import ORDER_SUBJECT, SERVICE_RECORD_SUBJECT
from shared.bus import CONTEXTS, stream_name
from shared.replay import checkpoint_key, district_counts, last_sequence, read_stream, stream_sequence

STREAMS = tuple(stream_name(context) for context in CONTEXTS)
# Points' stream followers: their checkpoints in points' store, their filter on dispatch's stream.
FOLLOWERS = {"points-ledger": ("DISPATCH", SERVICE_RECORD_SUBJECT), "points-orders": ("DISPATCH", ORDER_SUBJECT)}


@dataclass(frozen=True)
class Message:
    stream: str
    sequence: int
    subject: str
    envelope: dict[str, Any]

    @property
    def type(self) -> str:
        return self.envelope["type"]

    @property
    def aggregate(self) -> str:
        return self.envelope["aggregate_id"]

    @property
    def payload(self) -> dict[str, Any]:
        return self.envelope["payload"]


async def read_whole(nc: Client, stream: str) -> list[Message]:
    stop = await last_sequence(nc.jetstream(), stream)
    messages: list[Message] = []
    async for batch in read_stream(nc, stream, start=1, stop=stop):
        messages += [Message(stream, stream_sequence(m), m.subject, json.loads(m.data)) for m in batch]
    return messages


def stored_events(database: Path) -> list[tuple[str, str, str]]:
    """A service's event store: (event id, type, aggregate id) of every event it committed."""
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT event_id, event_type, aggregate_id FROM events ORDER BY position").fetchall()


def unpublished(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]


def follower_checkpoints(database: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(database) as conn:
        return {(c, s): q for c, s, q in conn.execute("SELECT consumer, stream, sequence FROM stream_checkpoints")}


def projection_checkpoints(database: Path) -> dict[str, int]:
    """The active generation's checkpoint per stream."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT c.stream, c.sequence FROM projection_checkpoints c JOIN projection_generations g "
            "ON g.projection = c.projection AND g.generation = c.generation WHERE g.active = 1"
        ).fetchall()
    return dict(rows)


async def last_of(js: JetStreamContext, stream: str, subject: str) -> int:
    try:
        return (await js.get_last_msg(stream, subject)).seq or 0
    except NotFoundError:
        return 0


async def lagging(js: JetStreamContext, data: Path, followers: dict[str, tuple[str, str]] = FOLLOWERS) -> list[str]:
    """Whatever has not drained yet: an outbox row, a durable consumer with messages pending or
    unacknowledged, a follower or the projection behind its stream. Empty when all is done."""
    behind: list[str] = []
    for service in ("registry", "dispatch", "points"):
        if rows := unpublished(data / f"{service}.db"):
            behind.append(f"{service} outbox: {rows} rows")
    for stream in STREAMS:
        for info in await js.consumers_info(stream):
            if not info.config.durable_name:
                continue  # a reader's ephemeral consumer (no acks): followers are checked below
            if info.num_pending or info.num_ack_pending:
                behind.append(
                    f"{stream} {info.name}: {info.num_pending} pending, {info.num_ack_pending} unacknowledged"
                )
    checkpoints = follower_checkpoints(data / "points.db")
    for name, (stream, subject) in followers.items():
        last, done = await last_of(js, stream, subject), checkpoints.get((name, stream), 0)
        if done < last:
            behind.append(f"{name} at {done} of {stream}'s {last}")
    projected = projection_checkpoints(data / "reporting.db")
    for stream in STREAMS:
        if any(key.startswith(f"{stream}.") for key in projected):  # folded district by district
            # A district without a checkpoint of its own is where `<stream>.*` says (a rebuild's end).
            settled = projected.get(checkpoint_key(stream, "*"), 0)
            for district in await district_counts(js, stream):
                key = checkpoint_key(stream, district)
                last = await last_of(js, stream, f"{stream.lower()}.{district}.>")
                if projected.get(key, settled) < last:
                    behind.append(f"reporting at {projected.get(key, settled)} of {key}'s {last}")
            continue
        last = await last_sequence(js, stream)
        if projected.get(stream, 0) < last:
            behind.append(f"reporting at {projected.get(stream, 0)} of {stream}'s {last}")
    return behind


async def drain(js: JetStreamContext, data: Path, timeout: float) -> list[str]:
    """Wait until nothing is behind, twice in a row (a reaction may still be on its way); what is
    still behind at the deadline."""
    deadline, calm = time.monotonic() + timeout, 0
    behind: list[str] = []
    while time.monotonic() < deadline:
        try:
            behind = await lagging(js, data)
        except (nats.errors.Error, OSError, TimeoutError) as error:  # NATS not (re)connected yet
            behind = [repr(error)]
        calm = 0 if behind else calm + 1
        if calm == 2:
            return []
        await asyncio.sleep(1.0)
    return behind


def duplicates(messages: list[Message]) -> dict[str, int]:
    counts = Counter(m.envelope["event_id"] for m in messages)
    return {event_id: n for event_id, n in counts.items() if n > 1}


def of_type(messages: list[Message], event_type: str) -> list[Message]:
    return [m for m in messages if m.type == event_type]
