"""Points' HTTP routes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from services.points import store
from shared.db import reading
from shared.errors import NotFound

router = APIRouter()


@router.get("/accounts/{volunteer_number}", tags=["accounts"])
async def get_account(volunteer_number: str, request: Request) -> dict[str, object]:
    async with reading(request.app.state.runtime.engine) as conn:
        row = (
            await conn.execute(select(store.accounts).where(store.accounts.c.volunteer_number == volunteer_number))
        ).mappings().first()
    if row is None:
        raise NotFound(f"no points account for volunteer {volunteer_number}")
    return {"volunteer_number": row["volunteer_number"], "balance": row["balance"], "opened_at": row["opened_at"]}
