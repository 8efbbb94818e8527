"""A running service: its store, its NATS connection, relay, subscribers and HTTP app.

Each service's `app.py` builds one of these; it is the only place real things are wired.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from faststream.nats import NatsBroker, NatsNKey
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CONTENT_TYPE_LATEST

from shared.asyncapi import Reader, asyncapi_router
from shared.auth import TokenVerifier
from shared.bus import (
    StreamSettings,
    context_stream,
    dead_letter_stream,
    ensure_stream,
    inbox_prefix,
    retry_stream,
    stream_name,
)
from shared.db import make_engine
from shared.eventstore import EventStore, EventStoreSchema
from shared.logmask import install_personal_data_mask
from shared.metrics import ServiceMetrics
from shared.migrations import migrations_of
from shared.outbox import OutboxRelay, RelaySettings
from shared.settings import ServiceSettings
from shared.subscriber import subscriptions
from shared.tracing import configure_tracing
from shared.web import ANYONE, ObservedRequests, allow, install_cors, install_problem_handlers

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0

Worker = Callable[[Client], Awaitable[None]]


def clock_job(name: str, run: Callable[[], Awaitable[list[str]]], every: float) -> Worker:
    """A worker that runs a job every `every` seconds and logs what it did (one line)."""

    async def on_the_clock(nc: Client) -> None:
        while True:
            try:
                done = await run()
                if done:
                    log.info("%s: %s", name, ", ".join(done[:20]) + (f" and {len(done) - 20} more" if len(done) > 20 else ""))
            except Exception:  # the store may be away for a moment: try again next round
                log.exception("%s failed; retrying", name)
            await asyncio.sleep(every)

    on_the_clock.__name__ = name
    return on_the_clock


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        schema: EventStoreSchema,
        *,
        owns_stream: bool = True,
        consumes: tuple[str, ...] = (),
        relay_settings: RelaySettings = RelaySettings(),
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        # Also where a service runs without `serve` (in a test, under another ASGI server).
        install_personal_data_mask()
        self.settings = settings
        self.name = settings.service
        self.engine = make_engine(settings.database_url, **(engine_options or {}))  # e.g. a bigger pool
        self.store = EventStore(self.engine, schema)
        self.stream_settings = StreamSettings(settings.stream_replicas, settings.duplicate_window_seconds)
        self.owns_stream = owns_stream
        self.consumes = consumes
        self.relay_settings = relay_settings
        self.broker = NatsBroker(
            settings.nats_servers,
            security=NatsNKey.from_file(settings.nats_nkey_seed_file) if settings.nats_nkey_seed_file else None,
            inbox_prefix=inbox_prefix(self.name),
            max_reconnect_attempts=-1,  # never give up on NATS: the outbox holds events meanwhile
            reconnect_time_wait=1,
            logger=logging.getLogger(f"beacon.{self.name}.bus"),
            log_level=logging.DEBUG,  # one line per batch is noise at INFO
        )
        self.relay: OutboxRelay | None = None
        self.workers: list[Worker] = []
        self.readers: list[Reader] = []  # what it applies of which stream: its AsyncAPI document
        self.subscribers_started = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        configure_tracing(self.name, settings.trace_exporter)
        self.metrics = ServiceMetrics(self.name, lambda: self.js)
        if owns_stream:
            self.metrics.watch_outbox(self.store, lambda: self.relay)
        self.metrics.watch_subscriptions(lambda: subscriptions(self.broker))
        self.metrics.watch_dead_letters()

    @property
    def own_stream(self) -> str:
        return stream_name(self.name)

    @property
    def js(self) -> JetStreamContext:
        return self.broker.config.connection_state.stream

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._on_start.append(hook)

    def reads(
        self, consumer: str, context: str, handles: Callable[[str], bool], *, subject: str = "", durable: bool = True
    ) -> None:
        """Declare which events of `context` a consumer applies (for `GET /asyncapi`)."""
        self.readers.append(Reader(consumer, context, subject or f"{context}.>", handles, durable))

    def add_worker(self, worker: Worker) -> None:
        """A long-running task given the NATS connection once the streams exist."""
        self.workers.append(worker)

    async def start(self) -> None:
        await migrations_of(self.name).upgrade(self.engine)  # replicas take turns (see there)
        for hook in self._on_start:
            await hook()
        await self.broker.connect()
        await ensure_stream(self.js, dead_letter_stream(self.stream_settings))
        if subscriptions(self.broker):  # its reactors take their dead letters back from there
            await ensure_stream(self.js, retry_stream(self.stream_settings))
        if self.owns_stream:
            await ensure_stream(self.js, context_stream(self.name, self.stream_settings))
            self.relay = OutboxRelay(self.store, self.js, self.own_stream, self.relay_settings)
            self._spawn(self.relay.run(), "outbox relay")
        self._spawn(self._start_consuming(), "subscribers")

    async def _start_consuming(self) -> None:
        # Another context's stream exists once its service has started; wait for it.
        await self._wait_for_streams([stream_name(c) for c in self.consumes])
        await self.broker.start()
        self.subscribers_started = True
        for worker in self.workers:
            self._spawn(worker(self.broker.connection), getattr(worker, "__name__", "worker"))

    async def _wait_for_streams(self, names: list[str]) -> None:
        delay = 0.1
        for name in names:
            while True:
                try:
                    await self.js.stream_info(name)
                    break
                except NotFoundError:
                    log.info("%s: waiting for stream %s", self.name, name)
                except Exception as error:
                    log.warning("%s: stream %s not reachable yet: %r", self.name, name, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _spawn(self, coroutine: Awaitable[Any], label: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"{self.name}: {label}")
        task.add_done_callback(self._report_crash)
        self._tasks.append(task)

    def _report_crash(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task that ignores its cancellation must not keep the process from stopping.
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in pending:
                where = io.StringIO()
                task.print_stack(file=where)
                log.error("%s did not stop within %.0f s; left behind at:\n%s", task.get_name(), STOP_TIMEOUT_SECONDS, where.getvalue())
        self._tasks.clear()
        try:
            await asyncio.wait_for(self.broker.stop(), 5.0)
        except Exception as error:  # NATS may be gone before us; nothing is left to flush
            log.warning("%s: closing the NATS connection: %r", self.name, error)
        await self.engine.dispose()

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
            checks["store"] = "ok"
        except Exception as error:
            checks["store"] = f"unreachable: {error!r}"
        connection = self.broker.config.connection_state
        connected = bool(getattr(connection, "connection", None)) and self.broker.connection.is_connected
        checks["nats"] = "ok" if connected else "disconnected"
        if connected:
            for name in ([self.own_stream] if self.owns_stream else []) + [stream_name(c) for c in self.consumes]:
                try:
                    await asyncio.wait_for(self.js.stream_info(name), 2.0)
                    checks[f"stream {name}"] = "ok"
                except Exception as error:
                    checks[f"stream {name}"] = f"missing: {error!r}"
        checks["subscribers"] = "ok" if self.subscribers_started else "waiting for streams"
        if self.owns_stream:
            try:
                checks["outbox_depth"] = await self.store.outbox_depth()
            except Exception:
                checks["outbox_depth"] = None
        return checks

    def create_app(self, *routers: APIRouter, title: str, description: str = "") -> FastAPI:
        runtime = self

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await runtime.start()
            try:
                yield
            finally:
                await runtime.stop()

        # FastAPI's own request spans are off: they name the raw path (which may hold an ID number)
        # and add three spans a request; shared.web.ObservedRequests makes one, by route template.
        telemetry = {"tracing": False, "metrics": False, "logs": False}
        app = FastAPI(title=title, description=description, lifespan=lifespan, telemetry=telemetry)
        app.state.runtime = self
        key_file = self.settings.jwt_public_key_file
        app.state.token_verifier = TokenVerifier(Path(key_file).read_bytes()) if key_file else None
        install_problem_handlers(app)
        install_cors(app, self.settings.cors_origins.split(","))
        app.add_middleware(ObservedRequests, metrics=self.metrics)  # outermost: sees every answer

        @app.get("/healthz", tags=["ops"], **allow(ANYONE))
        async def healthz() -> dict[str, str]:
            """The process is alive (it answers)."""
            return {"status": "ok", "service": runtime.name}

        @app.get("/readyz", tags=["ops"], **allow(ANYONE))
        async def readyz() -> JSONResponse:
            """Ready: store reachable, NATS connected, streams present, subscribers attached."""
            checks = await runtime.readiness()
            ready = all(v == "ok" for k, v in checks.items() if k != "outbox_depth")
            return JSONResponse(
                {"status": "ready" if ready else "degraded", "service": runtime.name, "checks": checks},
                status_code=200 if ready else 503,
            )

        @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse, **allow(ANYONE))
        async def metrics() -> Response:
            """Prometheus metrics (text format): requests, outbox, consumers' lag and dead letters."""
            return Response(await runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

        app.include_router(asyncapi_router(self))
        for router in routers:
            app.include_router(router)
        return app
