"""Wiring of the dispatch service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from nats.aio.client import Client

import shared.events  # noqa: F401  (registers the catalog)
from services.dispatch import store, subscribers
from services.dispatch.api import orders as order_routes
from services.dispatch.api import volunteers as volunteer_routes
from services.dispatch.handlers import orders as handlers
from shared.envelope import utcnow
from shared.eventstore import EventStore
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.subscriber import subscribe

log = logging.getLogger(__name__)

# How often the job looks for dispatched orders past their deadline.
TIME_OUT_EVERY_SECONDS = 30.0


def time_out_job(events: EventStore, every: float = TIME_OUT_EVERY_SECONDS) -> Callable[[Client], Awaitable[None]]:
    async def time_out_orders(nc: Client) -> None:
        while True:
            try:
                timed_out = await handlers.time_out_due(events, utcnow())
                if timed_out:
                    log.info("timed out orders %s", ", ".join(timed_out))
            except Exception:  # the store may be away for a moment: try again next round
                log.exception("order time-out job failed; retrying")
            await asyncio.sleep(every)

    return time_out_orders


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("dispatch")
    runtime = ServiceRuntime(settings, store.schema, consumes=("registry",))
    subscribe(runtime.broker, subscribers.reactor(runtime.store), "registry")
    runtime.add_worker(time_out_job(runtime.store))
    return runtime.create_app(volunteer_routes.router, order_routes.router, title="Beacon dispatch", description="Orders, shifts, attendance.")
