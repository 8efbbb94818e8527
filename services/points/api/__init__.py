"""Points' HTTP routes, one module per area; each parses, calls a handler, shapes the answer."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from services.points.api import ledger, time_bank

    return [ledger.router, time_bank.router]
