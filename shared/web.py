"""HTTP conventions every service shares: problem details (RFC 9457) and health probes."""

from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class FieldReason(BaseModel):
    field: str = Field(description="The offending input: a body member (dotted into nested ones), parameter or header.")
    reason: str


class Problem(BaseModel):
    """A refusal as RFC 9457 problem details (`application/problem+json`); nothing was written.
    `errors` names the offending input where there is one; other members say what the refusal is
    about (e.g. the aggregate that changed meanwhile)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldReason] = []


_MEANINGS = {
    401: "No access token, or one that is expired, forged or not ours",
    403: "The token's role may not use this",
    404: "Not found, or outside the caller's reach",
    409: "Clashes with the current state, or with a change made meanwhile (then retry)",
    415: "Not a media type this operation reads",
    429: "Too many attempts: `retry_after` says in how many seconds to try again",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: the refusals it answers with besides 422, which FastAPI documents
    for every route that takes input. The document shows each as a `Problem`."""
    return {status: {"description": _MEANINGS.get(status, "Refused")} for status in statuses}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def _reason(error: dict[str, Any]) -> dict[str, str]:
    if error.get("type") == "json_invalid":  # located by its character offset, not by a field
        where = error.get("loc", ("body", "?"))[-1]
        return {"field": "body", "reason": f"not JSON: {error.get('ctx', {}).get('error', 'invalid')} at {where}"}
    return {"field": _field(tuple(error.get("loc", ()))), "reason": error.get("msg", "invalid")}


def _documented_as_problems(app: FastAPI) -> None:
    """The OpenAPI document says what the handlers below send: every 4xx answer is a `Problem` in
    `application/problem+json` (FastAPI's own 422 schema describes a body that never goes out)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem_schema.pop("$defs"), Problem=problem_schema)
        for item in document.get("paths", {}).values():
            for operation in item.values():
                for status, response in operation.get("responses", {}).items():
                    if status.startswith("4"):
                        response["content"] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
                    if status == "422":
                        response["description"] = "Invalid input: `errors` names each offending field"
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class _NoNulInText:
    """Refuses a request whose text holds a NUL character (422, naming where): PostgreSQL can
    neither store nor compare one, and no input of ours has a use for it. Before routing, so it
    holds for every parameter and body alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = _nul_in_request_line(scope) if scope["type"] == "http" else None
        if field is None and scope["type"] == "http" and _is_json(scope):
            body, receive = await _buffered(receive)
            field = _nul_in_json(body)
        if field is None:
            await self.app(scope, receive, send)
            return
        reason = "holds a NUL character"
        await problem(422, "Invalid request", f"{field}: {reason}", errors=[{"field": field, "reason": reason}])(
            scope, receive, send
        )


def _nul_in_request_line(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return _path_parameter(scope["app"].openapi() if "app" in scope else {}, scope["path"])
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if "\x00" in name + value:
            return name
    return next((name.decode("latin-1") for name, value in scope["headers"] if b"\x00" in value), None)


def _path_parameter(document: dict[str, Any], path: str) -> str:
    """The parameter of the documented path that the NUL is in (before routing, which would fail)."""
    segments = path.split("/")
    for template in document.get("paths", {}):
        pairs = list(zip(template.split("/"), segments, strict=False))
        if len(pairs) == len(segments) == template.count("/") + 1 and all(t == s or t[:1] == "{" for t, s in pairs):
            return next((t.strip("{}").partition(":")[0] for t, s in pairs if "\x00" in s and t[:1] == "{"), "path")
    return "path"


def _is_json(scope: Scope) -> bool:
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
    return content_type == b"application/json" or content_type.endswith(b"+json")


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that hands it on as if it had not been read."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, replayed = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def _nul_in_json(body: bytes) -> str | None:
    if b"\\u0000" not in body:  # JSON carries one only escaped
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # FastAPI says what is wrong with it

    def find(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if isinstance(value, str):
            return path if "\x00" in value else None
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            found = (*path, str(key)) if "\x00" in str(key) else find(item, (*path, str(key)))
            if found is not None:
                return found
        return None

    try:
        found = find(document, ())
    except RecursionError:
        return "body"
    return None if found is None else ".".join(found) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    """Bad input answered as problem details, and the document saying so."""
    _documented_as_problems(app)
    app.add_middleware(_NoNulInText)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = [_reason(e) for e in error.errors()]
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
        if error.status_code == 400 and error.__cause__ is not None:
            # FastAPI could not read the body as JSON at all (not UTF-8, say): invalid input like
            # malformed JSON, which it answers with 422 itself.
            reason = "not JSON in UTF-8" if isinstance(error.__cause__, UnicodeDecodeError) else "not readable as JSON"
            return problem(422, "Invalid request", f"body: {reason}", errors=[{"field": "body", "reason": reason}])
        return problem(error.status_code, "HTTP error", str(error.detail))
