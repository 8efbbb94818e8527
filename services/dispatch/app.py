"""Wiring of the dispatch service: settings, store, bus, routes, and the jobs that run on the clock."""

from __future__ import annotations

import base64
import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import make_url

import shared.events  # noqa: F401  (registers the catalog)
from services.dispatch import store, subscribers
from services.dispatch.api import activities as activity_routes
from services.dispatch.api import attendance as attendance_routes
from services.dispatch.api import board as board_routes
from services.dispatch.api import mine as mine_routes
from services.dispatch.api import orders as order_routes
from services.dispatch.api import pages as page_routes
from services.dispatch.api import records as record_routes
from services.dispatch.api import volunteers as volunteer_routes
from services.dispatch.attendance import ShiftCodes
from services.dispatch.handlers import attendance as attendance_handlers
from services.dispatch.handlers import orders as order_handlers
from shared.audit import audit_router
from shared.db import async_url
from shared.devkeys import beside_sqlite, load_or_make
from shared.envelope import utcnow
from shared.runtime import ServiceRuntime, clock_job
from shared.settings import ServiceSettings
from shared.subscriber import subscribe

log = logging.getLogger(__name__)

# How often the clock jobs look for orders past their deadline and shifts past their end.
CLOCK_EVERY_SECONDS = 30.0
SQLITE_CONNECTIONS = 32  # kept open: see engine_options


class DispatchSettings(ServiceSettings):
    shift_code_secret: str = ""  # base64 of at least 16 bytes: signs the shifts' rotating QR codes
    shift_code_period_seconds: int = 30
    public_url: str = ""  # the base URL phones reach dispatch at; the request's own when empty
    # Where browsers reach registry and points, for the pages' calls (api/board.py); when empty,
    # the same host as the page at their default ports.
    registry_url: str = ""
    points_url: str = ""


def shift_code_secret(settings: DispatchSettings) -> bytes:
    if settings.shift_code_secret:
        return base64.b64decode(settings.shift_code_secret)
    path = beside_sqlite(settings.database_url, ".keys.json")
    if path is None:
        raise RuntimeError("set BEACON_SHIFT_CODE_SECRET: it signs the shifts' QR codes")
    stored = load_or_make(path, ("shift_codes",), warn="set BEACON_SHIFT_CODE_SECRET in production")
    return base64.b64decode(stored["shift_codes"])


def engine_options(settings: ServiceSettings) -> dict[str, Any]:
    """On SQLite, connections enough for a rush of scans (each reads on one of its own, and the
    store's default of 5 kept, beyond them, opening and closing a connection and its thread for
    every few scans: ~30 a second at the check-in rush); connections to a file are cheap."""
    if make_url(async_url(settings.database_url)).get_backend_name() == "sqlite":
        return {"pool_size": SQLITE_CONNECTIONS, "max_overflow": SQLITE_CONNECTIONS}
    return {}


def create_app(settings: ServiceSettings | None = None, *, clock_every: float = CLOCK_EVERY_SECONDS) -> FastAPI:
    base = (settings or DispatchSettings()).for_service("dispatch")
    dispatch_settings = base if isinstance(base, DispatchSettings) else DispatchSettings(**base.model_dump())
    runtime = ServiceRuntime(
        dispatch_settings,
        store.schema,
        consumes=("registry", "points"),
        engine_options=engine_options(dispatch_settings),
    )
    events = runtime.store
    for reactor, context in (
        (subscribers.reactor(events), "registry"),
        (subscribers.records_reactor(events), "dispatch"),
        (subscribers.time_bank_reactor(events), "points"),
    ):
        subscribe(runtime.broker, reactor, context)
        runtime.reads(f"{reactor.name}-{context}", context, reactor.handlers.__contains__)
    runtime.add_worker(
        clock_job("timed out orders", lambda: order_handlers.time_out_due(events, utcnow()), clock_every)
    )
    runtime.add_worker(
        clock_job("closed shifts", lambda: attendance_handlers.close_ended_shifts(events, utcnow()), clock_every)
    )
    app = runtime.create_app(
        audit_router("order", "/orders/{aggregate_id}/audit", "orders"),
        volunteer_routes.router,
        order_routes.router,
        activity_routes.router,
        attendance_routes.router,
        page_routes.router,
        record_routes.router,
        board_routes.router,
        mine_routes.router,
        title="Beacon dispatch",
        description="Orders, activities and shifts, QR attendance, service records.",
    )
    app.state.shift_codes = ShiftCodes(
        shift_code_secret(dispatch_settings), dispatch_settings.shift_code_period_seconds
    )
    app.state.public_url = dispatch_settings.public_url
    app.state.service_urls = {"registry": dispatch_settings.registry_url, "points": dispatch_settings.points_url}
    app.state.clock = utcnow
    return app
