"""Which replica runs each of a service's in-order followers: one at a time, shared out evenly.

A worker is an in-order follower (shared.replay): a whole stream, or a partition of a stream's
districts (reporting splits dispatch and points by district). Two replicas running the same
worker would read and fold every batch twice for one commit (the checkpoint locks in
shared.replay keep that correct, not cheap). So on PostgreSQL each worker runs in one replica
only, the one holding its session-level advisory lock, and the replicas share the workers out:
each takes up to its share (workers / replicas, rounded up; the replicas are counted by a shared
lock each holds) and gives back what it holds beyond it. Shares are counted in workers, not in
work: a service makes its workers of about equal weight (reporting's partitions) for replicas to
split the work evenly. A replica that dies or loses its database connection loses its locks with
it, and another takes its workers within a tick. On SQLite (one process owns the file) every
worker simply runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

Worker = Callable[[Client], Awaitable[None]]

# Holders of the group's shared lock: one database session per running replica. pg_locks shows a
# bigint advisory key as its high (classid) and low (objid) 32 bits, objsubid 1.
_REPLICAS = text(
    "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(:key, 0)"
)
_LOCK_SHARED = text("SELECT pg_advisory_lock_shared(hashtextextended(:key, 0))")
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))")


class Leadership:
    """Runs each added worker in exactly one of the replicas that share this database."""

    def __init__(self, engine: AsyncEngine, group: str, *, tick_seconds: float = 1.0) -> None:
        self.engine = engine
        self.group = group
        self.tick_seconds = tick_seconds
        self.workers: dict[str, Worker] = {}
        self.running: dict[str, asyncio.Task[None]] = {}  # the workers this replica leads
        self.replicas = 0  # as last counted (for tests and logs)

    def add(self, name: str, worker: Worker) -> None:
        self.workers[name] = worker

    @property
    def leading(self) -> set[str]:
        return set(self.running)

    async def run(self, nc: Client) -> None:
        """Lead this replica's share of the workers until cancelled (a runtime worker itself)."""
        if self.engine.dialect.name != "postgresql":
            await asyncio.gather(*(worker(nc) for worker in self.workers.values()))
            return
        delay = 0.2
        while True:
            try:
                async with self.engine.connect() as conn:
                    try:
                        # Session locks outlive transactions: none is left open between ticks.
                        await conn.execution_options(isolation_level="AUTOCOMMIT")
                        await conn.execute(_LOCK_SHARED, {"key": self._member_key})
                        delay = 0.2
                        while True:
                            await self._tick(conn, nc)
                            await asyncio.sleep(self.tick_seconds)
                    finally:
                        # Before the connection (and its locks) goes: no other replica starts a
                        # worker while ours may still commit.
                        await self._stop_all()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001  (the database is away: its locks went with it)
                log.warning("%s leadership: %r; again in %.1fs", self.group, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @property
    def _member_key(self) -> str:
        return f"replicas:{self.group}"

    def _key(self, name: str) -> str:
        # Not the key of shared.replay's per-transaction checkpoint lock: this replica's own
        # commits must not wait for the lock it holds on another connection.
        return f"leader:{self.group}:{name}"

    async def _tick(self, conn: AsyncConnection, nc: Client) -> None:
        for name, task in list(self.running.items()):
            if task.done():  # a worker that stopped by itself: let any replica start it again
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s stopped", name, exc_info=task.exception())
                del self.running[name]
                await self._unlock(conn, name)
        self.replicas = max(1, await conn.scalar(_REPLICAS, {"key": self._member_key}) or 0)
        share = math.ceil(len(self.workers) / self.replicas)
        if len(self.running) > share:
            # One at a time, so that a replica starting up takes it before we look again; the
            # last added first, so the first ones (a service adds its heaviest first) stay apart.
            name = [name for name in self.workers if name in self.running][-1]
            log.info("%s: handing %s over (%d replicas)", self.group, name, self.replicas)
            await self._stop(name)
            await self._unlock(conn, name)
            return
        for name, worker in self.workers.items():
            if len(self.running) >= share:
                break
            if name in self.running:
                continue
            if await conn.scalar(_TRY_LOCK, {"key": self._key(name)}):
                log.info("%s: leading %s (%d replicas)", self.group, name, self.replicas)
                task = asyncio.ensure_future(worker(nc))
                task.set_name(f"{self.group}: {name}")
                self.running[name] = task

    async def _unlock(self, conn: AsyncConnection, name: str) -> None:
        await conn.execute(_UNLOCK, {"key": self._key(name)})

    async def _stop(self, name: str) -> None:
        task = self.running.pop(name)
        # Its commit in flight finishes or rolls back before another replica may begin. Cancelled
        # again while it goes on: in Python 3.11 `asyncio.wait_for` (a stream reader waits with
        # it) loses a cancellation that comes as what it waits for arrives.
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1.0)
        await asyncio.gather(task, return_exceptions=True)

    async def _stop_all(self) -> None:
        for name in list(self.running):
            await self._stop(name)
