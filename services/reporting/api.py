"""Reporting's HTTP routes: figures, and the admin rebuild."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.reporting.queries import figures_for
from shared.errors import Conflict
from shared.replay import Projector

router = APIRouter()


def _projector(request: Request) -> Projector:
    return request.app.state.projector


@router.get("/figures/{code}", tags=["figures"])
async def get_figures(code: str, request: Request) -> dict[str, Any]:
    """Every figure for one node of the org tree (a city sums its districts)."""
    projector = _projector(request)
    generation = await projector.active_generation()
    return await figures_for(projector.engine, projector.projection, generation, code)  # type: ignore[arg-type]


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


@router.post("/admin/rebuild", status_code=202, tags=["admin"])
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


@router.get("/admin/rebuild", tags=["admin"])
async def rebuild_status(request: Request) -> dict[str, Any]:
    status: RebuildStatus = request.app.state.rebuild
    return {**status.as_dict(), "active_generation": await _projector(request).active_generation()}
