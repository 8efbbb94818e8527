"""HTTP conventions every service shares: problem details (RFC 9457), who may call a route, and
each request observed (metrics, trace span, correlation id)."""

from __future__ import annotations

import functools
import html
import json
import re
import time
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.trace import StatusCode
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import i18n, ratelimit
from shared.auth import Actor, Role, TokenVerifier, Unauthenticated
from shared.envelope import new_event_id
from shared.errors import Conflict, Forbidden, Invalid, NotAuthenticated, NotFound, Refused, TooManyAttempts
from shared.eventstore import ConcurrencyConflict, EventStore
from shared.logs import CORRELATION_HEADER, correlated, correlation_from
from shared.metrics import UNMATCHED_ROUTE, ServiceMetrics
from shared.ratelimit import RateLimit
from shared.tracing import server_span

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


ANYONE = "anyone"  # a public route (see `allow`)
ANONYMOUS = Actor("anonymous")

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="access token",
    description="An access token from registry's POST /auth/token (OAuth2 password flow).",
)


async def _actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    """The caller named by the request's access token; anonymous without one (a route's `allow`
    then refuses it, unless the route is public). A token that does not verify is a 401."""
    if credentials is None:
        return ANONYMOUS
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise NotAuthenticated("this service has no public key to check tokens with (BEACON_JWT_PUBLIC_KEY_FILE)")
    try:
        return verifier.actor(credentials.credentials)
    except Unauthenticated as error:
        raise NotAuthenticated(error.reason) from None


CurrentActor = Annotated[Actor, Depends(_actor)]


def allow(
    *roles: Role | str, openapi_extra: dict[str, Any] | None = None, limited_by: RateLimit | None = None
) -> dict[str, Any]:
    """Who may call a route, as keyword arguments for its decorator: `ANYONE` (public), or the
    roles that may. Anyone else is refused before the route reads anything: 401 without a
    token, 403 with a token of another role. What each role may reach is the route's own check
    (404 outside it: see shared/auth.py). The roles are written into the OpenAPI document as
    `x-beacon-roles`, from which the authorization matrix test is generated. `limited_by` counts
    each caller's requests that got past the door (429 with `Retry-After` beyond the limit)."""
    names = sorted({ANYONE if role == ANYONE else Role(role).value for role in roles})
    if not names:
        raise ValueError("a route names who may call it")
    extra = {**(openapi_extra or {}), "x-beacon-roles": names}
    allowed = None if ANYONE in names else frozenset(Role(name) for name in names)
    if limited_by is not None:
        extra["x-beacon-rate-limit"] = limited_by.description

    async def check(request: Request, actor: CurrentActor) -> None:
        if allowed is not None and actor.role is None:
            raise NotAuthenticated("sign in: send an access token as Authorization: Bearer <token>")
        if allowed is not None and actor.role not in allowed:
            raise Forbidden(f"a {actor.role.value} may not do this (only {', '.join(names)})")
        if limited_by is not None:
            ratelimit.check(limited_by, request, actor)

    if allowed is None and limited_by is None:
        return {"openapi_extra": extra}
    return {"dependencies": [Depends(check)], "openapi_extra": extra}


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


_STATUS_OF = (
    (Invalid, 422), (NotFound, 404), (Conflict, 409), (NotAuthenticated, 401), (Forbidden, 403),
    (TooManyAttempts, 429),
)  # fmt: skip


def problem(
    status: int, title: str, detail: str, language: i18n.Language = i18n.API_DEFAULT, **extra: Any
) -> JSONResponse:
    """Problem details; `title` and `detail` are given in English and said in `language` (see
    shared/i18n.py: the field-level reasons in `errors` are the caller's to translate)."""
    body = {
        "type": "about:blank", "title": i18n.title(title, language), "status": status,
        "detail": i18n.translate(detail, language), **extra,
    }  # fmt: skip
    headers = {"Content-Language": language, "Vary": "Accept-Language"}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def language_of(headers: Any) -> i18n.Language:
    """The language a problem is said in: the request's `Accept-Language` (English without one)."""
    return i18n.language_of(headers.get("accept-language"))


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def _reason(error: dict[str, Any], language: i18n.Language = i18n.API_DEFAULT) -> dict[str, str]:
    if error.get("type") == "json_invalid":  # located by its character offset, not by a field
        where = error.get("loc", ("body", "?"))[-1]
        why = error.get("ctx", {}).get("error", "invalid")
        reason = f"不是有效的 JSON：{why}（位置 {where}）" if language == "zh" else f"not JSON: {why} at {where}"
        return {"field": "body", "reason": reason}
    return {"field": _field(tuple(error.get("loc", ()))), "reason": i18n.validation_reason(error, language)}


def _documented_as_problems(app: FastAPI) -> None:
    """The OpenAPI document says what the handlers below send: every 4xx answer is a `Problem` in
    `application/problem+json` (FastAPI's own 422 schema describes a body that never goes out),
    and a route open to some roles only documents the 401 and 403 that `allow` answers with."""
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
                answers = operation.setdefault("responses", {})
                if "requestBody" in operation or operation.get("parameters"):  # a body read by hand too
                    answers.setdefault("422", {"description": "Invalid input"})
                # A token that does not verify is refused even on a public route (see `_actor`).
                answers.setdefault("401", {"description": "No valid access token: sign in (see the reason)"})
                if "x-beacon-rate-limit" in operation:
                    answers.setdefault("429", {"description": "Too many requests from this caller: see Retry-After"})
                if operation.get("x-beacon-roles", [ANYONE]) != [ANYONE]:  # see `allow`
                    answers.setdefault("403", {"description": "The caller's role may not do this"})
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
        language = i18n.language_of(dict(scope["headers"]).get(b"accept-language", b"").decode("latin-1"))
        reason = i18n.translate("holds a NUL character", language)
        refusal = problem(
            422, "Invalid request", f"{field}: {reason}", language, errors=[{"field": field, "reason": reason}]
        )
        await refusal(scope, receive, send)


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
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        language = language_of(request.headers)
        errors = [_reason(e, language) for e in error.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "Invalid request", detail, language, errors=errors)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        language = language_of(request.headers)
        # Titled by its kind (a subclass, such as registry's AlreadyRegistered, is a Conflict).
        kind, status = next(((kind, code) for kind, code in _STATUS_OF if isinstance(error, kind)), (type(error), 400))
        extra: dict[str, Any] = jsonable_encoder(error.details)  # times, decimals: as JSON says them
        if error.field:
            extra["errors"] = [{"field": error.field, "reason": i18n.translate(error.message, language)}]
        for reserved in ("type", "title", "status", "detail"):  # RFC 9457's own members win
            extra.pop(reserved, None)
        answer = problem(status, kind.__name__, error.message, language, **extra)
        if isinstance(error, NotAuthenticated):
            answer.headers["WWW-Authenticate"] = 'Bearer realm="beacon"'
        if isinstance(error, TooManyAttempts):
            answer.headers["Retry-After"] = str(error.retry_after)
        return answer

    @app.exception_handler(ConcurrencyConflict)
    async def conflict(request: Request, error: ConcurrencyConflict) -> JSONResponse:
        return problem(
            409, "Concurrent change", str(error), language_of(request.headers),
            aggregate_type=error.aggregate_type, aggregate_id=error.aggregate_id,
        )  # fmt: skip

    @app.exception_handler(IntegrityError)
    async def integrity(request: Request, error: IntegrityError) -> JSONResponse:
        # A uniqueness rule caught a race the handler's own check could not see.
        retry = "another request changed the same thing first; retry"
        return problem(409, "Concurrent change", retry, language_of(request.headers))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        language = language_of(request.headers)
        if error.status_code == 400 and error.__cause__ is not None:
            # FastAPI could not read the body as JSON at all (not UTF-8, say): invalid input like
            # malformed JSON, which it answers with 422 itself.
            reason = "not JSON in UTF-8" if isinstance(error.__cause__, UnicodeDecodeError) else "not readable as JSON"
            said = i18n.translate(reason, language)
            return problem(
                422, "Invalid request", f"body: {said}", language, errors=[{"field": "body", "reason": said}]
            )
        return problem(error.status_code, "HTTP error", str(error.detail), language)


# What a page served by another service may send and read (see `install_cors`).
_CORS_HEADERS = ("Authorization", "Content-Type", "Accept-Language", CORRELATION_HEADER, "traceparent", "tracestate")
_CORS_EXPOSED = ("Retry-After", "Content-Language", "Content-Disposition", CORRELATION_HEADER)


def install_cors(app: FastAPI, origins: Iterable[str]) -> None:
    """Lets pages of the listed origins (`BEACON_CORS_ORIGINS`: the other services' own, as
    `scheme://host:port`) call this service from a browser, and no other page. Access tokens
    travel in the Authorization header, never in cookies: no credentials are allowed. The
    middleware reads `app.state.cors_origins` itself, so an origin added there counts at once
    (a test adds the ports its services got)."""
    app.state.cors_origins = allowed = {origin.strip().rstrip("/") for origin in origins if origin.strip()}
    app.add_middleware(
        CORSMiddleware, allow_origins=allowed, allow_methods=sorted(_METHODS - {"HEAD", "OPTIONS"}),
        allow_headers=_CORS_HEADERS, expose_headers=_CORS_EXPOSED, max_age=600,
    )  # fmt: skip


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_READ_HEADERS = {b"traceparent", b"tracestate", CORRELATION_HEADER.lower().encode()}


class ObservedRequests:
    """Each request counted and timed by its route's template (never the path: one series per
    route, not per id), handled in a span that continues the caller's trace (`traceparent`), and
    under a correlation id (the caller's `X-Correlation-Id` if it is a UUID, else a new one) that
    its log lines and events carry and its answer returns."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _READ_HEADERS}
        correlation_id = correlation_from(headers.get(CORRELATION_HEADER.lower())) or new_event_id()
        returned = (CORRELATION_HEADER.lower().encode(), str(correlation_id).encode())
        method = scope["method"] if scope["method"] in _METHODS else "other"
        status = 500  # unless an answer starts: the exception's, sent by Starlette outside us

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), returned]}
            await send(message)

        started = time.perf_counter()
        with correlated(correlation_id), server_span(method, headers) as span:
            try:
                await self.app(scope, receive, answer)
            finally:
                route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
                if span.is_recording():  # else nothing takes the span (see shared.tracing)
                    span.update_name(f"{method} {route}")
                    span.set_attributes(
                        {"http.request.method": method, "http.route": route, "http.response.status_code": status,
                         "beacon.correlation_id": str(correlation_id)}
                    )  # fmt: skip
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                self.metrics.answered(route, method, status, time.perf_counter() - started)
