"""HTTP conventions every service shares: problem details (RFC 9457) and health probes."""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from shared.errors import Conflict, Invalid, NotFound, Refused
from shared.eventstore import ConcurrencyConflict, EventStore

PROBLEM = "application/problem+json"
_SLOT = re.compile(r"\{\{(\w+)\}\}")


@functools.cache
def _template(package: str, name: str) -> str:
    return (resources.files(package) / "pages" / name).read_text(encoding="utf-8")


def render(package: str, name: str, **values: object) -> str:
    """A service's page (`<package>/pages/<name>`) with each `{{slot}}` filled by its value,
    HTML-escaped; a slot without a value is a bug."""

    def fill(match: re.Match[str]) -> str:
        return html.escape(str(values[match.group(1)]))

    return _SLOT.sub(fill, _template(package, name))


@dataclass(frozen=True)
class Actor:
    """Who is acting; every event records it.

    Until sign-in arrives (issue 7) the caller states who they are and their roles in the
    `X-Beacon-Actor` and `X-Beacon-Roles` headers: a stand-in, trusted as given.
    """

    id: str
    roles: frozenset[str] = frozenset()

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


async def _actor(
    x_beacon_actor: Annotated[str | None, Header(max_length=100)] = None,
    x_beacon_roles: Annotated[str | None, Header(max_length=500)] = None,
) -> Actor:
    roles = frozenset(r.strip() for r in (x_beacon_roles or "").split(",") if r.strip())
    return Actor(x_beacon_actor or "anonymous", roles)


CurrentActor = Annotated[Actor, Depends(_actor)]


def events_of(request: Request) -> EventStore:
    """The service's event store (its runtime's)."""
    return request.app.state.runtime.store


def now_of(request: Request) -> datetime:
    """The server's clock: the app's `clock` (utcnow; a test may hold it still or move it on)."""
    return request.app.state.clock()


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "reason": e.get("msg", "invalid")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(Refused)
    async def refused(_: Request, error: Refused) -> JSONResponse:
        status = 422 if isinstance(error, Invalid) else 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 400
        extra: dict[str, Any] = jsonable_encoder(error.details)  # times, decimals: as JSON says them
        if error.field:
            extra["errors"] = [{"field": error.field, "reason": error.message}]
        for reserved in ("type", "title", "status", "detail"):  # RFC 9457's own members win
            extra.pop(reserved, None)
        return problem(status, type(error).__name__, error.message, **extra)

    @app.exception_handler(ConcurrencyConflict)
    async def conflict(_: Request, error: ConcurrencyConflict) -> JSONResponse:
        return problem(409, "Concurrent change", str(error), aggregate_type=error.aggregate_type, aggregate_id=error.aggregate_id)

    @app.exception_handler(IntegrityError)
    async def integrity(_: Request, error: IntegrityError) -> JSONResponse:
        # A uniqueness rule caught a race the handler's own check could not see.
        return problem(409, "Concurrent change", "another request changed the same thing first; retry")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return problem(error.status_code, "HTTP error", str(error.detail))
