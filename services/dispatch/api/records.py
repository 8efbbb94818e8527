"""Service records (志愿服务记录): an administrator's entry of hours, the organiser's confirmation,
decline, adjustment and revocation, the volunteer's correction requests and their outcome, and
each district's rounding rule. What was done and a volunteer's explanation stay in dispatch."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.dispatch import store
from services.dispatch.api import events_of, iso, now_of
from services.dispatch.api.reach import (
    DistrictPath,
    RecordPath,
    activity_named,
    district_in_reach,
    district_seen,
    org_path_reached,
    record_in_reach,
)
from services.dispatch.attendance import RoundingRule
from services.dispatch.handlers import records as handlers
from services.dispatch.records import RoundingSchedule, ServiceRecord
from shared.auth import STAFF, Role
from shared.db import reading
from shared.events.common import SiteId, VolunteerNumber
from shared.events.dispatch import ActivityId, CorrectionOutcome, Reason, RecordId, RoundingBand
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["service records"])

# What the path names, if the caller reaches it (see reach.py): a record, staff over its site and
# the volunteer whose it is; a district's rounding rule, to read, staff of or in the district;
# to set, the district's own staff or the city's.
Record = Annotated[dict[str, Any], Depends(record_in_reach)]
DistrictSeen = Annotated[str, Depends(district_seen)]
District = Annotated[str, Depends(district_in_reach)]
FreeText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Minutes = Annotated[int, Field(ge=0, le=527_040, description="Whole minutes.")]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volunteer_number: VolunteerNumber
    activity_id: ActivityId
    started_at: AwareDatetime
    ended_at: AwareDatetime
    minutes: Minutes | None = Field(default=None, description="Fewer than from start to end, e.g. for a break.")
    content: FreeText = Field(default="", description="What was done; kept by dispatch, never published.")


class Confirming(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: Minutes | None = Field(default=None, description="Other minutes than recorded; then say why.")
    reason: Reason | None = None


class Declining(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class Adjusting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: Minutes
    reason: Reason


class Revoking(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class CorrectionAsked(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requested_minutes: Minutes | None = Field(default=None, description="The minutes the volunteer believes right.")
    reason: Reason = Field(description="A code, e.g. wrong_minutes, forgot_check_out, wrong_activity.")
    explanation: FreeText = Field(
        default="", description="In the volunteer's words; kept by dispatch, never published."
    )


class CorrectionAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: CorrectionOutcome
    reason: Reason
    minutes: Minutes | None = Field(default=None, description="Granted: these minutes, else those asked for.")


class RuleSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bands: list[RoundingBand] = Field(min_length=1, max_length=60)
    effective_from: AwareDatetime | None = Field(default=None, description="Now when not given; never in the past.")


def _hours(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _bands(rule: RoundingRule) -> list[dict[str, Any]]:
    return [{"below_minutes": bound, "hours": _hours(hours)} for bound, hours in rule.bands]


def _state(record: ServiceRecord) -> dict[str, Any]:
    return {
        "record_id": record.record_id,
        "status": record.status,
        "volunteer_number": record.volunteer_number,
        "activity_id": record.activity_id,
        "shift_id": record.shift_id,
        "site_id": record.site_id,
        "field": record.field,
        "group_served": str(record.group_served),
        "source": str(record.source),
        "service_date": record.service_date.isoformat(),
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat(),
        "recorded_minutes": record.recorded_minutes,
        "recorded_hours": _hours(record.recorded_hours),
        "minutes": record.minutes,
        "hours": _hours(record.hours),
        "counted_hours": _hours(record.counted_hours),
        "flag": record.flag,
        "rounding": _bands(record.rule),
        "correction_pending": record.open_request is not None,
        "version": record.version,
    }


@router.post("/service-records", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def enter_hours(body: Entry, request: Request, response: Response, actor: CurrentActor) -> dict[str, Any]:
    """An administrator enters hours afterwards, for an activity they reach (any other is answered
    as unknown), of any volunteer who served there: the record is marked `admin_entry` and waits
    for the organiser like any other. The same entry again answers 200 with its record; an entry
    overlapping another record of the volunteer is refused (409, state `overlapping`)."""
    async with reading(events_of(request).engine) as conn:
        await activity_named(conn, actor, body.activity_id)
    entered = await handlers.enter_hours(events_of(request), actor, now=now_of(request), **body.model_dump())
    if not entered.created:
        response.status_code = 200
    return {"record_id": entered.record_id, "created": entered.created}


@router.get("/service-records", **allow(*STAFF))
async def list_records(
    request: Request,
    actor: CurrentActor,
    volunteer: Annotated[VolunteerNumber | None, Query()] = None,
    site: Annotated[SiteId | None, Query()] = None,
    activity: Annotated[ActivityId | None, Query()] = None,
    status: Annotated[str | None, Query(max_length=20, description="recorded, confirmed, declined or revoked")] = None,
    after: Annotated[RecordId | None, Query(description="The last record id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Service records at the sites the caller reaches, by id, a page at a time (a filter naming
    something outside their reach shows nothing, as one naming what does not exist)."""
    rows = await handlers.list_records(
        events_of(request),
        reached=org_path_reached(actor, store.service_records.c.org_path),
        volunteer=volunteer,
        site=site,
        activity=activity,
        status=status,
        after=after,
        limit=limit,
    )
    items = [
        {
            "record_id": r["record_id"],
            "status": r["status"],
            "volunteer_number": r["volunteer_number"],
            "activity_id": r["activity_id"],
            "shift_id": r["shift_id"],
            "site_id": r["site_id"],
            "source": r["source"],
            "service_date": r["service_date"].isoformat(),
            "started_at": iso(r["started_at"]),
            "ended_at": iso(r["ended_at"]),
            "minutes": r["minutes"],
            "hours": _hours(r["hours"]),
            "counted_hours": _hours(r["counted_hours"]),
            "flag": r["flag"],
            "correction_pending": r["correction_pending"],
            "content": r["content"],
        }
        for r in rows
    ]
    return {"items": items, "next": items[-1]["record_id"] if len(items) == limit else None}


@router.get("/service-records/{record_id}", **allow(*STAFF, Role.volunteer), responses=problems(404))
async def get_record(record_id: RecordPath, reached: Record, request: Request) -> dict[str, Any]:
    """The record's state, what was done, its whole history from the event store (who confirmed,
    adjusted or revoked it, and when; nothing is ever deleted) and the volunteer's correction
    requests with their explanations and outcomes. For staff over its site and the volunteer
    whose record it is."""
    detail = await handlers.record_detail(events_of(request), record_id)
    row = detail.row
    return {
        **_state(detail.record),
        "content": row["content"],
        "org_path": row["org_path"].split("/"),
        "recorded_at": iso(row["recorded_at"]),
        "history": [
            {
                "version": e.aggregate_version,
                "type": e.type,
                "actor": e.actor,
                "at": e.occurred_at.isoformat(),
                "payload": e.payload,  # no free text: content and explanations are in the view
            }
            for e in detail.history
        ],
        "correction_requests": [
            {
                "request_no": r["request_no"],
                "volunteer_number": r["volunteer_number"],
                "requested_minutes": r["requested_minutes"],
                "reason": r["reason"],
                "explanation": r["explanation"],
                "requested_at": iso(r["requested_at"]),
                "outcome": r["outcome"],
                "decided_reason": r["decided_reason"],
                "decided_by": r["decided_by"],
                "decided_at": iso(r["decided_at"]),
            }
            for r in detail.requests
        ],
    }


@router.post("/service-records/{record_id}/confirm", **allow(*STAFF), responses=problems(404, 409))
async def confirm(
    record_id: RecordPath, reached: Record, body: Confirming, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """The organiser confirms a waiting record: its hours count from now. With other minutes than
    recorded, give the reason. Confirming again with the same minutes changes nothing."""
    record = await handlers.confirm(events_of(request), actor, record_id, now=now_of(request), **body.model_dump())
    return _state(record)


@router.post("/service-records/{record_id}/decline", **allow(*STAFF), responses=problems(404, 409))
async def decline(
    record_id: RecordPath, reached: Record, body: Declining, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """The organiser declines a waiting record (a confirmed one is revoked instead)."""
    record = await handlers.decline(events_of(request), actor, record_id, reason=body.reason, now=now_of(request))
    return _state(record)


@router.post("/service-records/{record_id}/adjust", **allow(*STAFF), responses=problems(404, 409))
async def adjust(
    record_id: RecordPath, reached: Record, body: Adjusting, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Correct a confirmed record's minutes: the previous hours are reversed and the new ones
    stated, in one event."""
    record = await handlers.adjust(
        events_of(request), actor, record_id, minutes=body.minutes, reason=body.reason, now=now_of(request)
    )
    return _state(record)


@router.post("/service-records/{record_id}/revoke", **allow(*STAFF), responses=problems(404, 409))
async def revoke(
    record_id: RecordPath, reached: Record, body: Revoking, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Withdraw a confirmed record's hours (e.g. found not served); the record stays."""
    record = await handlers.revoke(events_of(request), actor, record_id, reason=body.reason, now=now_of(request))
    return _state(record)


@router.post(
    "/service-records/{record_id}/correction-requests",
    **allow(Role.volunteer),
    status_code=201,
    responses=problems(404, 409),
)
async def request_correction(
    record_id: RecordPath, reached: Record, body: CorrectionAsked, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """The volunteer (signed in: the token names them) asks for their record
    to be corrected; one request waits at a time. The explanation is kept, never published."""
    record = await handlers.request_correction(
        events_of(request),
        actor,
        record_id,
        reason=body.reason,
        requested_minutes=body.requested_minutes,
        explanation=body.explanation,
        now=now_of(request),
    )
    return _state(record)


@router.post("/service-records/{record_id}/correction-requests/decide", **allow(*STAFF), responses=problems(404, 409))
async def decide_correction(
    record_id: RecordPath, reached: Record, body: CorrectionAnswer, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """The organiser answers the waiting request: granted (the record is confirmed, or its
    confirmed hours adjusted, to the minutes given or else asked for) or refused."""
    record = await handlers.decide_correction(
        events_of(request),
        actor,
        record_id,
        outcome=body.outcome,
        reason=body.reason,
        minutes=body.minutes,
        now=now_of(request),
    )
    return _state(record)


def _schedule(schedule: RoundingSchedule, now: datetime) -> dict[str, Any]:
    in_force = schedule.in_force_at(now)
    return {
        "district_code": schedule.district_code,
        "in_force": {
            "bands": _bands(schedule.rule_at(now)),
            "effective_from": iso(in_force[0]) if in_force else None,
            "default": in_force is None,
        },
        "changes": [{"effective_from": at.isoformat(), "bands": _bands(rule)} for at, rule in schedule.changes],
        "version": schedule.version,
    }


@router.put(
    "/districts/{district_code}/rounding-rule",
    **allow(Role.city_admin, Role.district_admin),
    responses=problems(404, 409),
)
async def set_rounding_rule(
    district_code: DistrictPath, reached: District, body: RuleSetting, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """How the district rounds service minutes to hours, for service starting from
    `effective_from` on: each whole hour counts 1 h, the minutes left over count the hours of the
    first band they fall below. Records already drawn up keep their hours. Set by the district's
    own administrators or the city's."""
    now = now_of(request)
    schedule = await handlers.set_rounding_rule(
        events_of(request),
        actor,
        district_code,
        bands=[(b.below_minutes, b.hours) for b in body.bands],
        effective_from=body.effective_from,
        now=now,
    )
    return _schedule(schedule, now)


@router.get("/districts/{district_code}/rounding-rule", **allow(*STAFF), responses=problems(404))
async def get_rounding_rule(district_code: DistrictPath, reached: DistrictSeen, request: Request) -> dict[str, Any]:
    """The rule in force now (Beacon's default where the district has set none) and every change:
    for staff of the district, or anywhere in it, and the city's."""
    return _schedule(await handlers.rounding_schedule(events_of(request), district_code), now_of(request))
