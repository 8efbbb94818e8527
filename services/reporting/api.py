"""Reporting's HTTP routes: figures, and the admin rebuild."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AwareDatetime
from sqlalchemy import select

from services.reporting import exports
from services.reporting.queries import (
    HEADLINE,
    children,
    figures_at,
    figures_for,
    node_path,
    order_times,
    party_targets,
    period_of,
    top_teams,
    top_volunteers,
    trend,
)
from shared import web
from shared.auth import STAFF, Role
from shared.citytime import city_date
from shared.db import reading
from shared.envelope import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.replay import Projector
from shared.web import ANYONE, CurrentActor, allow

router = APIRouter()

# The days a period may start or end on: in the years a figure can have (2000 to 2200), which keeps
# the arithmetic on a period (30 days before its end, say) on the calendar.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2200, 12, 31)
From = Annotated[date | None, Query(alias="from", ge=FIRST_DAY, le=LAST_DAY, description="The period's first day.")]
To = Annotated[
    date | None,
    Query(alias="to", ge=FIRST_DAY, le=LAST_DAY, description="The period's last day: figures stand as of it."),
]


def _projector(request: Request) -> Projector:
    return request.app.state.projector


@router.get("/dashboard", **allow(ANYONE), response_class=HTMLResponse, tags=["dashboard"])
async def dashboard(request: Request) -> HTMLResponse:
    """The dashboard page (Chinese, with an English switch; `?code=` a node, `?lang=en`): headline
    figures, trends, bars by unit with drill-down, the orders funnel, the party members' targets."""
    projector = _projector(request)
    nodes = projector.projection.figure_tables(await projector.active_generation()).nodes  # type: ignore[attr-defined]
    async with reading(projector.engine) as conn:
        # The city when there is one, else the first node known (a district alone, say).
        top = await conn.scalar(select(nodes.c.code).order_by((nodes.c.level != "city"), nodes.c.code).limit(1))
    return HTMLResponse(
        web.render("services.reporting", "dashboard.html", code=top or ""), headers={"Cache-Control": "no-store"}
    )


async def node_in_reach(
    code: Annotated[str, Path(max_length=15, description="An org unit's division code.")],
    request: Request,
    actor: CurrentActor,
) -> str:
    """A node of the org tree the caller reaches: staff whose own node is on its path (a district's
    staff reach its streets and communities), the city admin every node. Any other is answered as
    a code the tree does not have (shared/auth.py)."""
    projector = _projector(request)
    nodes = projector.projection.figure_tables(await projector.active_generation()).nodes  # type: ignore[attr-defined]
    async with reading(projector.engine) as conn:
        path = await node_path(conn, nodes, code)
    if path is None or not actor.reaches(path):
        raise NotFound(f"unknown org unit {code}")
    return code


NodeInReach = Annotated[str, Depends(node_in_reach)]


def _period(period: str | None, start: date | None, end: date | None) -> tuple[date | None, date | None]:
    if period is not None:
        if start or end:
            raise Invalid("give a period or from/to, not both", field="period")
        return period_of(period)
    if start and end and end < start:
        raise Invalid("the period ends before it starts", field="to")
    return start, end


@router.get("/figures/{code}", **allow(*STAFF), tags=["figures"], responses={**exports.DOWNLOADS, **web.problems(404)})
async def get_figures(
    code: NodeInReach,
    request: Request,
    period: Annotated[str | None, Query(description="A year, month or day: 2026, 2026-11, 2026-11-23.")] = None,
    start: From = None,
    end: To = None,
    form: Annotated[
        str, Query(alias="format", pattern="^(json|csv|xlsx)$", description="json, or a csv or xlsx download.")
    ] = "json",
    at: Annotated[
        AwareDatetime | None,
        Query(description="A past moment (with its zone): the figures as they stood then, that day replayed up to it."),
    ] = None,
) -> Any:
    """Every figure for one node of the org tree (a city sums its districts): `figures` as they
    stood at the end of `to` (today when absent), and with a period, `period.figures`: what
    happened in it (stocks such as registered volunteers then show their change). With `at`,
    the figures as they stood at that moment instead (no period)."""
    start, end = _period(period, start, end)
    projector = _projector(request)
    generation = await projector.active_generation()
    if at is not None:
        if start or end:
            raise Invalid("give a moment or a period, not both", field="at")
        nc = request.app.state.runtime.broker.connection
        answer = await figures_at(projector.engine, projector.projection, generation, nc, code, at)  # type: ignore[arg-type]
    else:
        answer = await figures_for(projector.engine, projector.projection, generation, code, start=start, end=end)  # type: ignore[arg-type]
    if form == "json":
        return answer
    in_period = answer.get("period", {}).get("figures", {})
    names = sorted(set(answer["figures"]) | set(in_period))
    rows = [
        (name, answer["figures"].get(name, 0), in_period.get(name, 0) if "period" in answer else None) for name in names
    ]
    return exports.table(f"figures-{code}", ("figure", "as_of", "in_period"), rows, form)


@router.get("/figures/{code}/trend", **allow(*STAFF), tags=["figures"], responses=web.problems(404))
async def get_trend(
    code: NodeInReach,
    request: Request,
    figure: Annotated[
        str, Query(min_length=1, max_length=80, description="e.g. volunteers.registered, service.hours.")
    ],
    by: Annotated[str, Query(pattern="^(day|month)$")] = "month",
    start: From = None,
    end: To = None,
) -> dict[str, Any]:
    """A figure's change in each day or month, and its level at the end of each (a trend line).
    By default the last 30 days, or the last 12 months."""
    end = end or city_date(utcnow())
    if start is None:  # 30 days, or this month and the 11 before it
        start = end - timedelta(days=29) if by == "day" else (end.replace(day=1) - timedelta(days=335)).replace(day=1)
    start, end = _period(None, start, end)
    if (end - start).days > 3660:
        raise Invalid("a trend spans ten years at the most", field="from")
    projector = _projector(request)
    generation = await projector.active_generation()
    stored = "service.centihours" if figure == "service.hours" else figure
    return await trend(projector.engine, projector.projection, generation, code, stored, start=start, end=end, by=by)  # type: ignore[arg-type]


@router.get("/figures/{code}/children", **allow(*STAFF), tags=["figures"], responses=web.problems(404))
async def get_children(code: NodeInReach, request: Request) -> dict[str, Any]:
    """The node's children with their headline figures: bars by district, and the way down."""
    projector = _projector(request)
    generation = await projector.active_generation()
    return await children(projector.engine, projector.projection, generation, code, HEADLINE)  # type: ignore[arg-type]


@router.get(
    "/figures/{code}/orders", **allow(*STAFF), tags=["figures"], responses={**exports.DOWNLOADS, **web.problems(404)}
)
async def get_order_times(
    code: NodeInReach,
    request: Request,
    period: Annotated[str | None, Query(description="A year, month or day: 2026, 2026-11, 2026-11-23.")] = None,
    start: From = None,
    end: To = None,
    form: Annotated[
        str, Query(alias="format", pattern="^(json|csv|xlsx)$", description="json, or a csv or xlsx download.")
    ] = "json",
) -> Any:
    """Orders placed in the period: the minutes to dispatch and to accept (median, p90)."""
    start, end = _period(period, start, end)
    projector = _projector(request)
    generation = await projector.active_generation()
    answer = await order_times(projector.engine, projector.projection, generation, code, start=start, end=end)  # type: ignore[arg-type]
    if form == "json":
        return answer
    rows = [
        (step, answer[step]["count"], answer[step]["median_minutes"], answer[step]["p90_minutes"])
        for step in ("time_to_dispatch", "time_to_accept")
    ]
    return exports.table(f"orders-{code}", ("step", "orders", "median_minutes", "p90_minutes"), rows, form)


@router.get(
    "/figures/{code}/top-volunteers",
    **allow(*STAFF),
    tags=["figures"],
    responses={**exports.DOWNLOADS, **web.problems(404)},
)
async def get_top_volunteers(
    code: NodeInReach,
    request: Request,
    year: Annotated[int | None, Query(ge=2000, le=2200, description="This year when absent.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 10,
    form: Annotated[
        str, Query(alias="format", pattern="^(json|csv|xlsx)$", description="json, or a csv or xlsx download.")
    ] = "json",
) -> Any:
    """The node's volunteers with the most confirmed hours in the year (by volunteer number)."""
    projector = _projector(request)
    generation = await projector.active_generation()
    year = year or city_date(utcnow()).year
    answer = await top_volunteers(projector.engine, projector.projection, generation, code, year, limit)  # type: ignore[arg-type]
    if form == "json":
        return answer
    rows = [(v["rank"], v["volunteer_number"], v["hours"]) for v in answer["volunteers"]]
    return exports.table(f"top-volunteers-{code}-{year}", ("rank", "volunteer_number", "hours"), rows, form)


@router.get(
    "/figures/{code}/top-teams", **allow(*STAFF), tags=["figures"], responses={**exports.DOWNLOADS, **web.problems(404)}
)
async def get_top_teams(
    code: NodeInReach,
    request: Request,
    year: Annotated[int | None, Query(ge=2000, le=2200, description="This year when absent.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 10,
    form: Annotated[
        str, Query(alias="format", pattern="^(json|csv|xlsx)$", description="json, or a csv or xlsx download.")
    ] = "json",
) -> Any:
    """The node's active teams with the most confirmed hours in the year: the hours their
    members of now served that year."""
    projector = _projector(request)
    generation = await projector.active_generation()
    year = year or city_date(utcnow()).year
    answer = await top_teams(projector.engine, projector.projection, generation, code, year, limit)  # type: ignore[arg-type]
    if form == "json":
        return answer
    rows = [(t["rank"], t["team_id"], t["name"], t["members"], t["hours"]) for t in answer["teams"]]
    return exports.table(f"top-teams-{code}-{year}", ("rank", "team_id", "name", "members", "hours"), rows, form)


@router.get(
    "/figures/{code}/party-members",
    **allow(*STAFF),
    tags=["figures"],
    responses={**exports.DOWNLOADS, **web.problems(404)},
)
async def get_party_targets(
    code: NodeInReach,
    request: Request,
    year: Annotated[
        int | None, Query(ge=2000, le=2200, description="The year whose hours count; this year when absent.")
    ] = None,
    form: Annotated[
        str, Query(alias="format", pattern="^(json|csv|xlsx)$", description="json, or a csv or xlsx download.")
    ] = "json",
) -> Any:
    """Party-member targets: registered (target 60% of party members), 25 hours a year, reported
    in to their community (target 70%), and who falls short."""
    projector = _projector(request)
    generation = await projector.active_generation()
    year = year or city_date(utcnow()).year
    answer = await party_targets(projector.engine, projector.projection, generation, code, year)  # type: ignore[arg-type]
    if form == "json":
        return answer
    rows = [(m["volunteer_number"], m["reported_in"], m["hours"]) for m in answer["falling_short"]]
    return exports.table(
        f"party-members-falling-short-{code}-{year}", ("volunteer_number", "reported_in", "hours"), rows, form
    )


class RebuildStatus:
    def __init__(self) -> None:
        self.task: asyncio.Task[int] | None = None
        self.started = 0.0
        self.finished = 0.0
        self.streams: dict[str, tuple[int, int]] = {}
        self.error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        running = self.task is not None and not self.task.done()
        generation = None
        if self.task is not None and self.task.done() and not self.task.cancelled() and self.task.exception() is None:
            generation = self.task.result()
        return {
            "state": "running" if running else "failed" if self.error else "done" if generation else "idle",
            "generation": generation,
            "streams": {s: {"position": p, "last": last} for s, (p, last) in self.streams.items()},
            "seconds": round((self.finished or time.monotonic()) - self.started, 3) if self.started else None,
            "error": self.error,
        }


@router.post("/admin/rebuild", **allow(Role.city_admin), status_code=202, tags=["admin"], responses=web.problems(409))
async def start_rebuild(request: Request) -> JSONResponse:
    """Rebuild every figure from sequence 1 of the streams into a new generation, then swap.

    The current figures keep serving until the swap. Poll `GET /admin/rebuild` for progress.
    """
    status: RebuildStatus = request.app.state.rebuild
    if status.task is not None and not status.task.done():
        raise Conflict("a rebuild is already running")
    runtime = request.app.state.runtime
    projector = _projector(request)
    status.__init__()  # type: ignore[misc]
    status.started = time.monotonic()

    def progress(stream: str, position: int, last: int) -> None:
        status.streams[stream] = (position, last)

    async def run() -> int:
        try:
            return await projector.rebuild(runtime.broker.connection, progress=progress)
        except Exception as error:
            status.error = repr(error)
            raise
        finally:
            status.finished = time.monotonic()

    status.task = asyncio.create_task(run())
    return JSONResponse(status.as_dict(), status_code=202)


@router.get("/admin/rebuild", **allow(Role.city_admin), tags=["admin"])
async def rebuild_status(request: Request) -> dict[str, Any]:
    status: RebuildStatus = request.app.state.rebuild
    return {**status.as_dict(), "active_generation": await _projector(request).active_generation()}
