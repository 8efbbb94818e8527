"""Points' HTTP routes, one module per area; each parses, calls a handler, shapes the answer."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request

from shared.eventstore import EventStore


def events_of(request: Request) -> EventStore:
    return request.app.state.runtime.store


def now_of(request: Request) -> datetime:
    """The server's clock: the app's `clock` (utcnow; a test may hold it still or move it on)."""
    return request.app.state.clock()


def routers() -> list[APIRouter]:
    from services.points.api import ledger, time_bank

    return [ledger.router, time_bank.router]
