"""Activities, shifts and sign-ups: load, let activities.py decide, record, bring the views along.

An activity's title and description and its posts' titles stay in the view: events carry codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch import activities, store
from services.dispatch.activities import Activity, Occurrence, ShiftState
from shared.auth import Actor
from shared.catalog import Event
from shared.errors import Conflict, Invalid, NotFound
from shared.events.dispatch import (
    ActivityKind,
    Geofence,
    GroupServed,
    Post,
    ShiftCancelled,
    ShiftOpened,
    ShiftPosition,
    SignUpWithdrawn,
    VolunteerSignedUp,
    WaitlistPromoted,
)
from shared.eventstore import EventStore, Transaction, retrying


@dataclass(frozen=True)
class PostPlan:
    post_id: str
    title: str
    required_skills: tuple[str, ...] = ()


async def _site_path(conn: AsyncConnection, site_id: str) -> tuple[str, ...]:
    sites = store.sites
    row = (await conn.execute(select(sites.c.org_path, sites.c.open).where(sites.c.site_id == site_id))).first()
    if row is None:
        raise NotFound(f"dispatch does not know site {site_id} (yet)", field="site_id")
    if not row.open:
        raise Invalid(f"site {site_id} is closed", field="site_id")
    return tuple(row.org_path.split("/"))


async def schedule_activity(
    events: EventStore,
    actor: Actor,
    *,
    site_id: str,
    kind: ActivityKind,
    theme: str,
    field: str,
    group_served: GroupServed,
    starts_on: date,
    ends_on: date,
    title: str = "",
    description: str = "",
    posts: Sequence[PostPlan] = (),
    order_id: str | None = None,
    brand_team_id: str | None = None,
) -> str:
    async with events.transaction() as tx:
        org_path = await _site_path(tx.conn, site_id)
        if order_id is not None:
            await tx.history("order", order_id, "order")  # NotFound for an unknown order
        activity_id = await store.next_number(tx.conn, "A")
        decided = activities.schedule(
            activity_id,
            site_id=site_id,
            kind=kind,
            theme=theme,
            field=field,
            group_served=group_served,
            starts_on=starts_on,
            ends_on=ends_on,
            posts=[Post(post_id=p.post_id, required_skills=sorted(set(p.required_skills))) for p in posts],
            order_id=order_id,
            brand_team_id=brand_team_id,
        )
        await tx.record(activity_id, 0, decided, org_path=org_path, actor=actor.id)
        await tx.conn.execute(
            store.activities.insert().values(
                activity_id=activity_id,
                site_id=site_id,
                org_path="/".join(org_path),
                kind=str(kind),
                theme=theme,
                field=field,
                group_served=str(group_served),
                order_id=order_id,
                brand_team_id=brand_team_id,
                starts_on=starts_on,
                ends_on=ends_on,
                status=activities.SCHEDULED,
                title=title,
                description=description,
                posts=[{"post_id": p.post_id, "title": p.title, "required_skills": list(p.required_skills)} for p in posts],
            )
        )
    return activity_id


async def _activity(tx: Transaction, activity_id: str) -> tuple[Activity, int, tuple[str, ...]]:
    history = await tx.history("activity", activity_id, "activity")
    activity = activities.fold_activity(history.payloads)
    assert activity is not None
    return activity, history.version, history.org_path


async def open_shifts(
    events: EventStore,
    actor: Actor,
    activity_id: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    capacity: int,
    now: datetime,
    every_days: int = 1,
    count: int = 1,
    post_id: str | None = None,
    geofence: Geofence | None = None,
) -> list[str]:
    """Open a shift, or `count` of them recurring every `every_days`; their ids in order."""
    planned: list[Occurrence] = activities.occurrences(starts_at, ends_at, every_days, count)
    async with events.transaction() as tx:
        activity, _, org_path = await _activity(tx, activity_id)
        shift_ids = await store.numbers.reserve(tx.conn, "SH", len(planned))
        decided = activities.open_shifts(
            activity, shift_ids, planned, capacity=capacity, now=now, post_id=post_id, geofence=geofence
        )
        rows = []
        for event in decided:
            assert isinstance(event, ShiftOpened)
            await tx.record(event.shift_id, 0, [event], org_path=org_path, actor=actor.id)
            rows.append(
                {
                    "shift_id": event.shift_id,
                    "activity_id": activity_id,
                    "site_id": event.site_id,
                    "org_path": "/".join(org_path),
                    "post_id": event.post_id,
                    "series_id": event.series_id,
                    "starts_at": event.starts_at,
                    "ends_at": event.ends_at,
                    "capacity": event.capacity,
                    "geofence": None if event.geofence is None else event.geofence.model_dump(),
                    "status": activities.OPEN,
                    "confirmed": 0,
                    "waitlisted": 0,
                }
            )
        await tx.conn.execute(store.shifts.insert(), rows)
    return shift_ids


async def complete_activity(
    events: EventStore, actor: Actor, activity_id: str, *, people_served: int, now: datetime
) -> Activity:
    async with events.transaction() as tx:
        activity, version, org_path = await _activity(tx, activity_id)
        decided = activities.complete(activity, people_served, now)
        if decided:
            await tx.record(activity_id, version, decided, org_path=org_path, actor=actor.id)
            activity = activities.fold_activity(decided, activity)
            table = store.activities
            await tx.conn.execute(
                update(table)
                .where(table.c.activity_id == activity_id)
                .values(status=activity.status, people_served=activity.people_served)
            )
    return activity


async def cancel_activity(events: EventStore, actor: Actor, activity_id: str, *, reason: str, now: datetime) -> Activity:
    """Cancel the activity and, in the same transaction, each of its shifts still to come."""
    async with events.transaction() as tx:
        activity, version, org_path = await _activity(tx, activity_id)
        decided = activities.cancel(activity, reason, now)
        if not decided:
            return activity
        await tx.record(activity_id, version, decided, org_path=org_path, actor=actor.id)
        table = store.activities
        await tx.conn.execute(update(table).where(table.c.activity_id == activity_id).values(status=activities.CANCELLED))
        shifts = store.shifts
        coming = (
            await tx.conn.execute(
                select(shifts.c.shift_id)
                .where(shifts.c.activity_id == activity_id, shifts.c.status == activities.OPEN, shifts.c.ends_at > now)
                .order_by(shifts.c.shift_id)
            )
        ).scalars().all()
        for shift_id in coming:
            await _change_shift(tx, actor, shift_id, lambda s: activities.cancel_shift(s, reason, now))
    return activities.fold_activity(decided, activity)


# --- Shifts ---------------------------------------------------------------------------------------


async def _shift(tx: Transaction, shift_id: str) -> tuple[ShiftState, int, tuple[str, ...]]:
    history = await tx.history("shift", shift_id, "shift")
    state = activities.fold_shift(history.payloads)
    assert state is not None
    return state, history.version, history.org_path


_NOTICE = {
    "cancelled": "班次 {shift} 已取消（{reason}）。The shift {shift} was cancelled ({reason}).",
    "promoted": "候补成功：您已确认参加班次 {shift}。A place freed up: you are confirmed for shift {shift}.",
}


async def _project(tx: Transaction, events: Sequence[Event]) -> None:
    """Bring the sign-ups view and the shift's status along, and leave each volunteer told a notice.
    (The shift's counts come from its folded state, in _change_shift.)"""
    conn, signups, shifts, notices = tx.conn, store.signups, store.shifts, store.notices
    for event in events:
        match event:
            case VolunteerSignedUp():
                await conn.execute(
                    signups.insert().values(
                        shift_id=event.shift_id,
                        volunteer_number=event.volunteer_number,
                        position=str(event.position),
                        signed_up_at=event.at,
                    )
                )
            case SignUpWithdrawn():
                await conn.execute(
                    signups.delete().where(
                        signups.c.shift_id == event.shift_id, signups.c.volunteer_number == event.volunteer_number
                    )
                )
            case WaitlistPromoted():
                await conn.execute(
                    update(signups)
                    .where(signups.c.shift_id == event.shift_id, signups.c.volunteer_number == event.volunteer_number)
                    .values(position=str(ShiftPosition.confirmed))
                )
                text = _NOTICE["promoted"].format(shift=event.shift_id)
                await conn.execute(
                    notices.insert().values(
                        volunteer_number=event.volunteer_number, at=event.at, kind="promoted", shift_id=event.shift_id, text=text
                    )
                )
            case ShiftCancelled():
                await conn.execute(update(shifts).where(shifts.c.shift_id == event.shift_id).values(status=activities.CANCELLED))
                text = _NOTICE["cancelled"].format(shift=event.shift_id, reason=event.reason)
                if event.notified:
                    await conn.execute(
                        notices.insert(),
                        [
                            {"volunteer_number": n, "at": event.at, "kind": "cancelled", "shift_id": event.shift_id, "text": text}
                            for n in event.notified
                        ],
                    )


async def _change_shift(tx: Transaction, actor: Actor, shift_id: str, decide: Any) -> tuple[ShiftState, list[Event]]:
    await tx.lock("shift", shift_id)  # sign-ups for one shift come in crowds: they queue here
    state, version, org_path = await _shift(tx, shift_id)
    decided = decide(state)
    if decided:
        await tx.record(shift_id, version, decided, org_path=org_path, actor=actor.id)
        await _project(tx, decided)
        for event in decided:
            state = activities.evolve_shift(state, event)
        shifts = store.shifts
        await tx.conn.execute(
            update(shifts)
            .where(shifts.c.shift_id == shift_id)
            .values(confirmed=len(state.confirmed), waitlisted=len(state.waitlist))
        )
    return state, decided


async def _dispatchable(conn: AsyncConnection, volunteer_number: str) -> None:
    known = store.volunteers
    status = await conn.scalar(select(known.c.status).where(known.c.volunteer_number == volunteer_number))
    if status is None:
        raise Invalid(f"dispatch does not know volunteer {volunteer_number} (yet)", field="volunteer_number")
    if status != "verified":
        raise Conflict(f"volunteer {volunteer_number} is {status}: only a verified volunteer signs up", state=status)


async def sign_up(events: EventStore, actor: Actor, shift_id: str, volunteer_number: str, now: datetime) -> ShiftPosition:
    """Sign a verified volunteer up; their position (confirmed or waitlisted). Again: the same.
    Volunteers signing up for one shift at once queue on its version: each decides afresh."""

    async def attempt() -> ShiftState:
        async with events.transaction() as tx:
            await _dispatchable(tx.conn, volunteer_number)
            state, _ = await _change_shift(tx, actor, shift_id, lambda s: activities.sign_up(s, volunteer_number, now))
        return state

    position = (await retrying(attempt)).position_of(volunteer_number)
    assert position is not None
    return position


async def _shift_command(events: EventStore, actor: Actor, shift_id: str, decide: Any) -> ShiftState:
    async def attempt() -> ShiftState:
        async with events.transaction() as tx:
            state, _ = await _change_shift(tx, actor, shift_id, decide)
        return state

    return await retrying(attempt)


async def withdraw(events: EventStore, actor: Actor, shift_id: str, volunteer_number: str, now: datetime) -> ShiftState:
    return await _shift_command(events, actor, shift_id, lambda s: activities.withdraw(s, volunteer_number, now))


async def cancel_shift(events: EventStore, actor: Actor, shift_id: str, *, reason: str, now: datetime) -> ShiftState:
    return await _shift_command(events, actor, shift_id, lambda s: activities.cancel_shift(s, reason, now))


async def shift_row(conn: AsyncConnection, shift_id: str) -> dict[str, Any]:
    row = (await conn.execute(select(store.shifts).where(store.shifts.c.shift_id == shift_id))).mappings().first()
    if row is None:
        raise NotFound(f"unknown shift {shift_id}")
    return dict(row)
