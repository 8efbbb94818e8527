"""Service records (志愿服务记录): drawn up at a check-out (inside attendance's own transaction) or
from an administrator's entry; confirmed, declined, adjusted or revoked by the organiser (the
envelope's actor); corrections the volunteer asks for and their outcome; the districts' rounding
rules. Each loads the aggregate, lets records.py decide, records the events and brings the
`service_records`, `correction_requests` and `rounding_rules` views along, in one transaction.

What was done (`content`) and a volunteer's explanation are free text: they stay in the views and
never go into an event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch import records, store
from services.dispatch.activities import city_date
from services.dispatch.records import RoundingSchedule, ServiceRecord
from shared.auth import Actor
from shared.catalog import Event
from shared.db import reading, upsert
from shared.envelope import EventEnvelope
from shared.errors import Conflict, Invalid, NotFound
from shared.events.dispatch import (
    CorrectionDecided,
    CorrectionOutcome,
    CorrectionRequested,
    RecordSource,
    RoundingRuleSet,
)
from shared.eventstore import EventStore, Transaction

RECORD, RULE = "service_record", "rounding_rule"
LIVE = (records.RECORDED, records.CONFIRMED)


# --- Rounding rules -------------------------------------------------------------------------------


async def _schedule(tx: Transaction, district_code: str) -> RoundingSchedule:
    try:
        history = await tx.history(RULE, district_code)
    except NotFound:
        return RoundingSchedule(district_code)
    return records.fold_schedule(district_code, history.payloads)


async def set_rounding_rule(
    events: EventStore,
    actor: Actor,
    district_code: str,
    *,
    bands: Sequence[tuple[int, Decimal | str]],
    now: datetime,
    effective_from: datetime | None = None,
) -> RoundingSchedule:
    """Round the district's minutes by `bands` for service starting from `effective_from` (now
    when not given) on; setting what already applies changes nothing. The schedule after it."""
    async with events.transaction() as tx:
        schedule = await _schedule(tx, district_code)
        decided = records.set_rounding_rule(schedule, bands, effective_from or now, now)
        if decided:
            await tx.record(district_code, schedule.version, decided, org_path=(district_code,), actor=actor.id)
        for event in decided:
            assert isinstance(event, RoundingRuleSet)
            schedule = records.evolve_schedule(schedule, event)
            values = {"bands": [b.model_dump(mode="json") for b in event.bands], "set_by": actor.id}
            statement = upsert(tx.conn, store.rounding_rules).values(
                district_code=district_code, effective_from=event.effective_from, **values
            )
            await tx.conn.execute(
                statement.on_conflict_do_update(index_elements=["district_code", "effective_from"], set_=values)
            )
    return schedule


async def rounding_schedule(events: EventStore, district_code: str) -> RoundingSchedule:
    async with reading(events.engine) as conn:
        return await _schedule(Transaction(conn, events), district_code)


# --- Drawing records up ---------------------------------------------------------------------------


def _view_values(record: ServiceRecord, now: datetime) -> dict[str, Any]:
    return {
        "status": record.status,
        "minutes": record.minutes,
        "hours": record.hours,
        "counted_hours": record.counted_hours,
        "correction_pending": record.open_request is not None,
        "updated_at": now,
    }


async def _create(
    tx: Transaction, actor: Actor, decided: list[Event], org_path: tuple[str, ...], content: str
) -> ServiceRecord:
    record, row = await _recorded(tx, actor, decided, org_path, content)
    await tx.conn.execute(store.service_records.insert().values(**row))
    return record


async def _recorded(
    tx: Transaction, actor: Actor, decided: list[Event], org_path: tuple[str, ...], content: str
) -> tuple[ServiceRecord, dict[str, Any]]:
    """A new record's events appended; the record and its `service_records` row, to insert."""
    record = records.fold(decided)
    assert record is not None
    (envelope,) = await tx.record(record.record_id, 0, decided, org_path=org_path, actor=actor.id)
    row = {
        "record_id": record.record_id,
        "volunteer_number": record.volunteer_number,
        "activity_id": record.activity_id,
        "shift_id": record.shift_id,
        "site_id": record.site_id,
        "org_path": "/".join(org_path),
        "field": record.field,
        "group_served": str(record.group_served),
        "source": str(record.source),
        "service_date": record.service_date,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "recorded_minutes": record.recorded_minutes,
        "flag": record.flag,
        "content": content,
        "recorded_at": envelope.recorded_at,
        **_view_values(record, envelope.recorded_at),
    }
    return record, row


async def _activity_row(conn: AsyncConnection, activity_id: str) -> Any:
    return (
        (await conn.execute(select(store.activities).where(store.activities.c.activity_id == activity_id)))
        .mappings()
        .first()
    )


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
) -> str:
    """Draw up the record of a check-out, in the caller's transaction; its id. The record of
    this shift and volunteer when there is one already (nothing else is done)."""
    table = store.service_records
    existing = await tx.conn.scalar(
        select(table.c.record_id).where(table.c.shift_id == shift_id, table.c.volunteer_number == volunteer_number)
    )
    if existing is not None:
        return existing
    shift = (await tx.conn.execute(select(store.shifts).where(store.shifts.c.shift_id == shift_id))).mappings().first()
    if shift is None:
        raise NotFound(f"unknown shift {shift_id}")
    activity = await _activity_row(tx.conn, shift["activity_id"])
    if activity is None:
        raise NotFound(f"unknown activity {shift['activity_id']}")
    schedule = await _schedule(tx, shift["org_path"].split("/")[0])
    check_out = CheckOut(shift_id, volunteer_number, checked_in_at, checked_out_at, minutes, flag)
    (record_id,) = await store.numbers.reserve(tx.conn, "R", 1)
    row = await draw_up_drafted(tx, actor, _draft(check_out, shift, activity, schedule), record_id)
    await insert_records(tx, [row])
    return record_id


@dataclass(frozen=True)
class CheckOut:
    """A check-out as its service record needs it: when the volunteer came and went, and the
    attendance's flag (a forgotten check-out closed at the shift's end)."""

    shift_id: str
    volunteer_number: str
    checked_in_at: datetime
    checked_out_at: datetime
    minutes: int
    flag: str | None


@dataclass(frozen=True)
class RecordDraft:
    """A check-out's record as read from the views, all but its number (taken when written)."""

    check_out: CheckOut
    shift: Any  # the shift's view row
    activity: Any  # its activity's view row
    rule: records.RoundingRule  # the district's rounding in force at the check-in


def _draft(check_out: CheckOut, shift: Any, activity: Any, schedule: RoundingSchedule) -> RecordDraft:
    return RecordDraft(check_out, shift, activity, schedule.rule_at(check_out.checked_in_at))


async def draw_up_drafted(tx: Transaction, actor: Actor, draft: RecordDraft, record_id: str) -> dict[str, Any]:
    """Append a drafted record's event under its number (taken in `tx`); its view row, for
    `insert_records` (a batch's rows go in one statement)."""
    out, shift, activity = draft.check_out, draft.shift, draft.activity
    decided = records.draw_up(
        record_id,
        volunteer_number=out.volunteer_number,
        activity_id=shift["activity_id"],
        shift_id=out.shift_id,
        site_id=shift["site_id"],
        field=activity["field"],
        group_served=activity["group_served"],
        source=RecordSource.attendance,
        started_at=out.checked_in_at,
        ended_at=out.checked_out_at,
        minutes=out.minutes,
        rule=draft.rule,
        flag=out.flag,
    )
    _, row = await _recorded(tx, actor, decided, tuple(shift["org_path"].split("/")), content=activity["title"])
    return row


async def insert_records(tx: Transaction, rows: Sequence[dict[str, Any]]) -> None:
    """New records' `service_records` rows (from `draw_up_drafted`)."""
    if rows:
        await tx.conn.execute(store.service_records.insert(), list(rows))


async def draft_records(
    events: EventStore, conn: AsyncConnection, check_outs: Sequence[CheckOut]
) -> list[RecordDraft | None]:
    """The records a batch of check-outs would draw up, read in a few queries on `conn` (a read
    connection: no write lock held meanwhile); None for a check-out whose shift and volunteer
    have a record already, or had one drawn up earlier in the batch. Raises NotFound as
    `draw_up_from_attendance` does. Whoever writes the drafts must make a record drawn up
    meanwhile fail the write (the one-record-per-attendance index does)."""
    table = store.service_records
    shift_ids = sorted({out.shift_id for out in check_outs})
    numbers = sorted({out.volunteer_number for out in check_outs})
    existing = {
        (row.shift_id, row.volunteer_number)
        for row in await conn.execute(
            select(table.c.shift_id, table.c.volunteer_number).where(
                table.c.shift_id.in_(shift_ids), table.c.volunteer_number.in_(numbers)
            )
        )
    }
    shifts = {
        row["shift_id"]: row
        for row in (await conn.execute(select(store.shifts).where(store.shifts.c.shift_id.in_(shift_ids)))).mappings()
    }
    activity_ids = sorted({row["activity_id"] for row in shifts.values()})
    activities = {
        row["activity_id"]: row
        for row in (
            await conn.execute(select(store.activities).where(store.activities.c.activity_id.in_(activity_ids)))
        ).mappings()
    }
    tx, schedules = Transaction(conn, events), {}
    drafts: list[RecordDraft | None] = []
    for out in check_outs:
        if (out.shift_id, out.volunteer_number) in existing:
            drafts.append(None)
            continue
        shift = shifts.get(out.shift_id)
        if shift is None:
            raise NotFound(f"unknown shift {out.shift_id}")
        activity = activities.get(shift["activity_id"])
        if activity is None:
            raise NotFound(f"unknown activity {shift['activity_id']}")
        district = shift["org_path"].split("/")[0]
        if district not in schedules:
            schedules[district] = await _schedule(tx, district)
        existing.add((out.shift_id, out.volunteer_number))
        drafts.append(_draft(out, shift, activity, schedules[district]))
    return drafts


@dataclass(frozen=True)
class Entered:
    record_id: str
    created: bool  # false: the same entry was made before, and this is its record


async def enter_hours(
    events: EventStore,
    actor: Actor,
    *,
    volunteer_number: str,
    activity_id: str,
    started_at: datetime,
    ended_at: datetime,
    now: datetime,
    content: str = "",
    minutes: int | None = None,
) -> Entered:
    """An administrator enters hours afterwards (source admin_entry). The same entry again gives
    its record back; one overlapping another live record of the volunteer is refused, so that no
    hour counts twice."""
    served = records.entry_minutes(started_at, ended_at, now, minutes)
    table = store.service_records
    async with events.transaction() as tx:
        # Taken first: its row lock makes a concurrent entry wait here, then see this one's record.
        record_id = await store.next_number(tx.conn, "R")
        activity = await _activity_row(tx.conn, activity_id)
        if activity is None:
            raise NotFound(f"dispatch knows no activity {activity_id}", field="activity_id")
        known = store.volunteers
        if await tx.conn.scalar(select(known.c.status).where(known.c.volunteer_number == volunteer_number)) is None:
            raise Invalid(f"dispatch does not know volunteer {volunteer_number} (yet)", field="volunteer_number")
        day = city_date(started_at)
        if not activity["starts_on"] <= day <= activity["ends_on"]:
            raise Invalid(
                f"the service on {day.isoformat()} falls outside the activity's dates "
                f"({activity['starts_on'].isoformat()} to {activity['ends_on'].isoformat()})",
                field="started_at",
            )
        clash = (
            (
                await tx.conn.execute(
                    select(table)
                    .where(
                        table.c.volunteer_number == volunteer_number,
                        table.c.status.in_(LIVE),
                        table.c.started_at < ended_at,
                        table.c.ended_at > started_at,
                    )
                    .order_by(table.c.record_id)
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        if clash is not None:
            same = (
                clash["source"],
                clash["activity_id"],
                clash["started_at"],
                clash["ended_at"],
                clash["recorded_minutes"],
            )
            if same == (RecordSource.admin_entry, activity_id, started_at, ended_at, served):
                await store.numbers.give_back(tx.conn, "R", 1)
                return Entered(clash["record_id"], created=False)
            raise Conflict(
                f"volunteer {volunteer_number} already has record {clash['record_id']} "
                f"({clash['status']}) at that time: no hour counts twice",
                state="overlapping",
                record_id=clash["record_id"],
            )
        org_path = tuple(activity["org_path"].split("/"))
        schedule = await _schedule(tx, org_path[0])
        decided = records.draw_up(
            record_id,
            volunteer_number=volunteer_number,
            activity_id=activity_id,
            site_id=activity["site_id"],
            field=activity["field"],
            group_served=activity["group_served"],
            source=RecordSource.admin_entry,
            started_at=started_at,
            ended_at=ended_at,
            minutes=served,
            rule=schedule.rule_at(started_at),
        )
        await _create(tx, actor, decided, org_path, content)
    return Entered(record_id, created=True)


# --- The organiser's and the volunteer's commands -------------------------------------------------


async def _project(tx: Transaction, actor: Actor, record: ServiceRecord, event: Event, explanation: str) -> None:
    requests = store.correction_requests
    match event:
        case CorrectionRequested():
            waiting = record.open_request
            assert waiting is not None
            await tx.conn.execute(
                requests.insert().values(
                    record_id=record.record_id,
                    request_no=waiting.number,
                    volunteer_number=record.volunteer_number,
                    requested_minutes=event.requested_minutes,
                    reason=event.reason,
                    explanation=explanation,
                    requested_at=event.at,
                )
            )
        case CorrectionDecided():
            decided = record.requests[-1]
            await tx.conn.execute(
                update(requests)
                .where(requests.c.record_id == record.record_id, requests.c.request_no == decided.number)
                .values(
                    outcome=str(event.outcome), decided_reason=event.reason, decided_by=actor.id, decided_at=event.at
                )
            )


async def _change(
    events: EventStore,
    actor: Actor,
    record_id: str,
    decide: Callable[[ServiceRecord], list[Event]],
    *,
    explanation: str = "",
) -> ServiceRecord:
    """Load a record, let the domain decide, record and bring the views along; the new state."""
    async with events.transaction() as tx:
        history = await tx.history(RECORD, record_id, "service record")
        record = records.fold(history.payloads)
        assert record is not None
        decided = decide(record)
        if not decided:
            return record
        envelopes = await tx.record(record_id, history.version, decided, org_path=history.org_path, actor=actor.id)
        for event in decided:
            record = records.evolve(record, event)
            await _project(tx, actor, record, event, explanation)
        table = store.service_records
        await tx.conn.execute(
            update(table)
            .where(table.c.record_id == record_id)
            .values(**_view_values(record, envelopes[-1].recorded_at))
        )
    return record


async def confirm(
    events: EventStore,
    actor: Actor,
    record_id: str,
    *,
    now: datetime,
    minutes: int | None = None,
    reason: str | None = None,
) -> ServiceRecord:
    return await _change(events, actor, record_id, lambda r: records.confirm(r, now, minutes=minutes, reason=reason))


async def decline(events: EventStore, actor: Actor, record_id: str, *, reason: str, now: datetime) -> ServiceRecord:
    return await _change(events, actor, record_id, lambda r: records.decline(r, reason, now))


async def adjust(
    events: EventStore, actor: Actor, record_id: str, *, minutes: int, reason: str, now: datetime
) -> ServiceRecord:
    return await _change(events, actor, record_id, lambda r: records.adjust(r, minutes, reason, now))


async def revoke(events: EventStore, actor: Actor, record_id: str, *, reason: str, now: datetime) -> ServiceRecord:
    return await _change(events, actor, record_id, lambda r: records.revoke(r, reason, now))


async def request_correction(
    events: EventStore,
    actor: Actor,
    record_id: str,
    *,
    reason: str,
    now: datetime,
    requested_minutes: int | None = None,
    explanation: str = "",
) -> ServiceRecord:
    """The volunteer (signed in as themselves: the scope of their token) asks for a correction;
    their explanation stays in the view."""
    return await _change(
        events,
        actor,
        record_id,
        lambda r: records.request_correction(r, actor.scope, reason, now, requested_minutes=requested_minutes),
        explanation=explanation,
    )


async def decide_correction(
    events: EventStore,
    actor: Actor,
    record_id: str,
    *,
    outcome: CorrectionOutcome,
    reason: str,
    now: datetime,
    minutes: int | None = None,
) -> ServiceRecord:
    return await _change(
        events, actor, record_id, lambda r: records.decide_correction(r, outcome, reason, now, minutes=minutes)
    )


# --- Reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordDetail:
    record: ServiceRecord
    history: list[EventEnvelope]
    row: dict[str, Any]
    requests: list[dict[str, Any]]


async def record_detail(events: EventStore, record_id: str) -> RecordDetail:
    """The record's state, every event with who recorded it, its view row and its requests."""
    async with reading(events.engine) as conn:
        envelopes = await Transaction(conn, events).load(RECORD, record_id)
        if not envelopes:
            raise NotFound(f"unknown service record {record_id}")
        table, requests = store.service_records, store.correction_requests
        row = (await conn.execute(select(table).where(table.c.record_id == record_id))).mappings().one()
        asked = (
            (
                await conn.execute(
                    select(requests).where(requests.c.record_id == record_id).order_by(requests.c.request_no)
                )
            )
            .mappings()
            .all()
        )
    record = records.fold(events.catalog.payload_of(e) for e in envelopes)
    assert record is not None
    return RecordDetail(record, envelopes, dict(row), [dict(r) for r in asked])


async def list_records(
    events: EventStore,
    *,
    reached: ColumnElement[bool] | None = None,
    volunteer: str | None = None,
    site: str | None = None,
    activity: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Records by id, a page at a time (`after`: the last id of the previous page); `reached`
    keeps those the caller reaches."""
    table = store.service_records
    query = select(table).order_by(table.c.record_id).limit(limit)
    if reached is not None:
        query = query.where(reached)
    for column, value in (
        (table.c.volunteer_number, volunteer),
        (table.c.site_id, site),
        (table.c.activity_id, activity),
        (table.c.status, status),
    ):
        if value:
            query = query.where(column == value)
    if after:
        query = query.where(table.c.record_id > after)
    async with reading(events.engine) as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings().all()]
