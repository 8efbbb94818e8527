"""Dispatch's HTTP routes, one module per area; each parses, calls a handler, shapes the answer."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request

from shared.eventstore import EventStore


def events_of(request: Request) -> EventStore:
    return request.app.state.runtime.store


def now_of(request: Request) -> datetime:
    """The server's clock: the app's `clock` (utcnow; a test may hold it still or move it on)."""
    return request.app.state.clock()


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
