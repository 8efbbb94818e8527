"""Dispatch's HTTP routes, one module per area; each parses, calls a handler, shapes the answer."""

from __future__ import annotations

from datetime import datetime

from shared.web import events_of, now_of  # noqa: F401  (re-exported to the routes)


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
