"""Service records (志愿服务记录). PLACEHOLDER written by the lead so the service imports while the
records work is under way: the records helper replaces this whole file."""

from __future__ import annotations

from datetime import datetime

from shared.eventstore import Transaction
from shared.web import Actor


async def draw_up_from_attendance(
    tx: Transaction,
    actor: Actor,
    *,
    shift_id: str,
    volunteer_number: str,
    checked_in_at: datetime,
    checked_out_at: datetime,
    minutes: int,
    flag: str | None,
) -> str | None:
    return None
