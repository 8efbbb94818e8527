"""What people see: the shift's rotating code as a QR image, the page that shows it on a screen or
a printout, and the phone's check-in page that the code opens. The HTML is in ../pages/, with every
style and script inline (no CDN: a site's screen may have no way out to the internet)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from services.dispatch import qr, store
from services.dispatch.activities import CANCELLED, CITY_ZONE
from services.dispatch.api import events_of, now_of
from services.dispatch.api.attendance import current_code, shift_codes
from services.dispatch.api.reach import ShiftPath, shift_in_reach
from services.dispatch.handlers import activities as activity_handlers
from shared import web
from shared.auth import STAFF
from shared.db import reading
from shared.web import ANYONE, allow

router = APIRouter(tags=["pages"])

NO_STORE = "no-store"  # a code is good for a minute at most: no cache may keep one
VALID_UNTIL = "X-Beacon-Valid-Until"  # when the code in the image stops being accepted
_WEEKDAYS_ZH = "一二三四五六日"
_STATUS_NOTES = {
    CANCELLED: "本班次已取消 · This shift was cancelled",
    "closed": "本班次已结束 · This shift has ended",
}


def render(name: str, **values: object) -> str:
    return web.render("services.dispatch", name, **values)


def _when(starts_at: datetime, ends_at: datetime) -> tuple[str, str]:
    """The shift's times in city time, in Chinese and in English."""
    start, end = starts_at.astimezone(CITY_ZONE), ends_at.astimezone(CITY_ZONE)
    end_zh = f"{end:%H:%M}" if end.date() == start.date() else f"{end.month}月{end.day}日 {end:%H:%M}"
    end_en = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %d %b} {end:%H:%M}"
    zh = f"{start.year}年{start.month}月{start.day}日（周{_WEEKDAYS_ZH[start.weekday()]}）{start:%H:%M}–{end_zh}"
    return zh, f"{start:%a %d %b %Y}, {start:%H:%M}–{end_en} (Beijing time)"


# The shift in the path, if the caller reaches it (staff over its site: see reach.py).
Shift = Annotated[dict[str, Any], Depends(shift_in_reach)]


def _image(content: bytes, media_type: str, code: dict[str, Any]) -> Response:
    return Response(
        content, media_type=media_type, headers={"Cache-Control": NO_STORE, VALID_UNTIL: code["valid_until"]}
    )


@router.get(
    "/shifts/{shift_id}/code.svg", **allow(*STAFF), response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **web.problems(404)},
)  # fmt: skip
async def code_svg(shift_id: ShiftPath, row: Shift, request: Request) -> Response:
    """The shift's check-in URL now, as a QR code in SVG (scales to any screen); it rotates every period."""
    code = current_code(request, shift_id, now_of(request))
    return _image(qr.svg_of(code["url"]), "image/svg+xml", code)


@router.get(
    "/shifts/{shift_id}/code.png", **allow(*STAFF), response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **web.problems(404)},
)  # fmt: skip
async def code_png(
    shift_id: ShiftPath,
    row: Shift,
    request: Request,
    scale: Annotated[int, Query(ge=1, le=40, description="Pixels per module.")] = qr.PNG_SCALE,
) -> Response:
    """The shift's check-in URL now, as a QR code in PNG; it rotates every period."""
    code = current_code(request, shift_id, now_of(request))
    return _image(qr.png_of(code["url"], scale), "image/png", code)


@router.get("/shifts/{shift_id}/display", **allow(ANYONE), response_class=HTMLResponse, responses=web.problems(404))
async def display(shift_id: ShiftPath, request: Request) -> HTMLResponse:
    """The page for a screen at the site (or a printout): the shift and its code, refreshed every
    half period."""
    activities = store.activities
    async with reading(events_of(request).engine) as conn:
        row = await activity_handlers.shift_row(conn, shift_id)
        activity = (
            await conn.execute(
                select(activities.c.title, activities.c.posts).where(activities.c.activity_id == row["activity_id"])
            )
        ).first()
    title, posts = (activity.title, activity.posts) if activity else ("", [])
    post = next((p.get("title") or p["post_id"] for p in posts or () if p["post_id"] == row["post_id"]), "")
    when_zh, when_en = _when(row["starts_at"], row["ends_at"])
    page = render(
        "display.html",
        shift_id=shift_id,
        title=title or "志愿服务 · Volunteer service",
        site=row["site_id"],
        post=post,
        when_zh=when_zh,
        when_en=when_en,
        status=row["status"],
        status_note=_STATUS_NOTES.get(row["status"], ""),
        period_seconds=int(shift_codes(request).period.total_seconds()),
        zone=CITY_ZONE.key,
    )
    return HTMLResponse(page, headers={"Cache-Control": NO_STORE})


@router.get("/check-in", **allow(ANYONE), response_class=HTMLResponse)
async def check_in(
    code: Annotated[str | None, Query(max_length=200, description="The code the QR image carried.")] = None,
) -> HTMLResponse:
    """The phone's page the QR code opens: the shift, and a button that checks in or out. The page's
    script reads the code from the address and sends it to `POST /scans`; nothing is decided here,
    so thousands of phones opening it at once cost no reads of the store."""
    page = render("check_in.html", zone=CITY_ZONE.key)
    # The address holds a code: no cache keeps it, and no referrer passes it on.
    return HTMLResponse(page, headers={"Cache-Control": NO_STORE, "Referrer-Policy": "no-referrer"})
