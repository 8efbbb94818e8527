"""Bulk import of volunteers: a CSV file as the provincial platform exports it, streamed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from services.registry import importer
from services.registry.api import registry_of
from shared.auth import STAFF
from shared.citytime import city_today
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["imports"])

# The JSON answer lists this many problems; the rest are counted (the CLI can write them all).
LISTED_PROBLEMS = 1_000


@router.post(
    "/volunteers/import",
    **allow(*STAFF, openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}}}}),
    responses=problems(409, 415),
)
async def import_volunteers(request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Register every good row of a CSV file (`text/csv`, UTF-8 or GB18030; Chinese or English
    headers: 姓名/name, 身份证号/id_number, 手机号/phone, 所属社区代码/community_code, 政治面貌,
    技能, 同意授权, 标签), 500 rows per transaction, reading the body as it arrives.

    Answers what was done: rows read, imported, skipped (the ID number is already registered:
    sending the same file again imports nothing twice), refused, and the problems with their line
    number (the header is line 1) and reason. A header without a required column is refused (422)
    and nothing is written. `stopped` says why reading ended early (broken encoding or quoting);
    the rows before it were imported. A row for a community outside the caller's part of the tree
    is refused.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "text/csv":
        raise HTTPException(415, f"send the file as text/csv, not {media_type or 'without a content type'}")
    report = await importer.import_volunteers(
        registry_of(request), actor, request.stream(), today=city_today(), keep_problems=LISTED_PROBLEMS,
        reaches=actor.reaches,
    )
    return report.as_dict()
