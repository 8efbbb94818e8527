"""Pages for people at a desk or on a phone, served by dispatch: the sign-in page, the staff
order board, and the script they share (keeping the access token, calling the services, the
words of each page in Chinese and English). The pages call dispatch's own API and, from the
browser, registry's and points' (each service allows the others' origins: BEACON_CORS_ORIGINS).
The HTML is in ../pages/, every style and script inline or served here: nothing external."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.dispatch.activities import CITY_ZONE
from shared import i18n, web
from shared.settings import DEFAULT_PORTS
from shared.web import ANYONE, allow

router = APIRouter(tags=["pages"])

Lang = Annotated[
    str | None, Query(pattern="^(zh|en)$", description="zh or en; else the browser's Accept-Language, else zh")
]


def service_url(request: Request, service: str) -> str:
    """Where the browser reaches another service: as configured (BEACON_REGISTRY_URL, ...), else
    beside this one on the same host at the service's default port (a local run)."""
    configured = getattr(request.app.state, "service_urls", {}).get(service)
    if configured:
        return str(configured).rstrip("/")
    return f"{request.url.scheme}://{request.url.hostname}:{DEFAULT_PORTS[service]}"


def page(request: Request, name: str, lang: str | None) -> HTMLResponse:
    """A page in the language asked for (`?lang=`), or the browser's, Chinese by default."""
    language = lang if lang in i18n.LANGUAGES else i18n.language_of(request.headers.get("accept-language"), "zh")
    html = web.render(
        "services.dispatch", name, lang=language, zone=CITY_ZONE.key,
        registry_url=service_url(request, "registry"), points_url=service_url(request, "points"),
    )  # fmt: skip
    # The token rides in the fragment and sessionStorage, never in the address sent or a referrer.
    headers = {
        "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer",
        "Content-Language": language,
        "Vary": "Accept-Language",
    }
    return HTMLResponse(html, headers=headers)


@router.get("/sign-in", **allow(ANYONE), response_class=HTMLResponse)
async def sign_in(request: Request, lang: Lang = None) -> HTMLResponse:
    """Sign in with a username and password (registry's `POST /auth/token`); the access token is
    kept in this browser tab's sessionStorage, and the page goes on to the board (staff) or the
    volunteer's pages."""
    return page(request, "sign_in.html", lang)


@router.get("/board", **allow(ANYONE), response_class=HTMLResponse)
async def board(request: Request, lang: Lang = None) -> HTMLResponse:
    """The staff order board: orders by state, each order's suggested volunteers with a button
    to dispatch to one, and its history. Its script reads `GET /orders`, `/orders/{id}/suggestions`
    and `/orders/{id}/audit` with the signed-in staff member's token."""
    return page(request, "board.html", lang)


@router.get("/assets/session.js", **allow(ANYONE), response_class=Response)
async def session_script() -> Response:
    """The pages' shared script: the token, the calls, the words."""
    script = web.render("services.dispatch", "session.js")
    return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-cache"})
