"""The service records of a batch of check-outs (services/dispatch/subscribers.py RecordsReactor),
over a real store (SQLite and PostgreSQL): read before the write lock and written a few dozen to
a transaction, they are the records `draw_up_record` draws up one at a time, numbers included; each
event is claimed in the inbox, an event claimed before is skipped, a record drawn up before is not
drawn up again (and takes no number), each record's event carries its check-out's correlation id,
a part of a batch that clashes with a claim taken meanwhile keeps nothing, and a batch waits
while scans come at a rush's pace (up to a limit)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.dispatch import store, subscribers
from services.dispatch.handlers import attendance
from shared.catalog import catalog
from shared.events.dispatch import VolunteerCheckedOut
from shared.eventstore import EventStore
from shared.subscriber import Work
from tests.integration.test_dispatch_records_api import ANN, BOB, NIGHT, PATH, dispatch, stored_envelopes

__all__ = ["dispatch"]  # the fixture: dispatch with an activity, three shifts and two volunteers

# (night, volunteer, minutes, flag): Ann on two nights, Bob on one (his check-out forgotten).
CHECK_OUTS = [(0, ANN, 120, None), (0, BOB, 95, "no_check_out"), (1, ANN, 61, None)]
RECORD_COLUMNS = [c for c in store.service_records.c if c.name not in ("recorded_at", "updated_at")]


def shift(night: int) -> str:
    return f"SH{night + 1:08d}"


async def attended(events: EventStore) -> list[Work]:
    """The attendances' rows, as the scans leave them, and a delivery of each check-out."""
    work = []
    async with events.transaction() as tx:
        for night, number, minutes, flag in CHECK_OUTS:
            start = NIGHT + timedelta(days=night)
            out = VolunteerCheckedOut(
                shift_id=shift(night), volunteer_number=number, at=start + timedelta(minutes=minutes), minutes=minutes
            )
            await tx.conn.execute(
                store.attendances.insert().values(
                    shift_id=out.shift_id, volunteer_number=number, checked_in_at=start,
                    checked_out_at=out.at, minutes=minutes, flag=flag,
                )
            )  # fmt: skip
            envelope = catalog.envelope(
                out, aggregate_id=f"{out.shift_id}.{number}", aggregate_version=2, org_path=PATH,
                actor=number, correlation_id=uuid.uuid4(),
            )  # fmt: skip
            delivered = SimpleNamespace(headers=None, subject=catalog.subject_of(envelope))  # as NATS hands it over
            work.append(Work(delivered, envelope, out, subscribers.draw_up_record))  # type: ignore[arg-type]
    return work


async def records_and_claims(events: EventStore, conn: Any = None) -> tuple[list[Any], set[str]]:
    async def read(conn: Any) -> tuple[list[Any], set[str]]:
        table, inbox = store.service_records, events.schema.inbox
        rows = (await conn.execute(select(*RECORD_COLUMNS).order_by(table.c.record_id))).all()
        claims = set(await conn.scalars(select(inbox.c.event_id).where(inbox.c.consumer == "dispatch-records")))
        return [tuple(row) for row in rows], claims

    if conn is not None:
        return await read(conn)
    async with events.engine.connect() as fresh:
        return await read(fresh)


class _Undo(Exception):
    pass


async def one_at_a_time(reactor: Any, work: list[Work]) -> tuple[list[Any], set[str]]:
    """What `draw_up_record` writes for each, one after the other, then undone."""
    seen: tuple[list[Any], set[str]] = ([], set())
    with pytest.raises(_Undo):
        async with reactor.store.transaction() as tx:
            for item in work:
                await reactor._apply(tx, item)
            seen = await records_and_claims(reactor.store, tx.conn)
            raise _Undo
    return seen


@pytest.mark.parametrize("part", [25, 2], ids=["one part", "in parts"])
async def test_a_batch_draws_up_the_records_one_at_a_time_would_each_under_its_check_outs_correlation(
    dispatch, part, monkeypatch
) -> None:
    _, app = dispatch
    events = app.state.runtime.store
    reactor = subscribers.records_reactor(events)
    monkeypatch.setattr(reactor, "PART", part)
    work = await attended(events)
    expected = await one_at_a_time(reactor, work)
    assert await records_and_claims(events) == ([], set())  # undone

    await reactor.apply_batch(work)

    rows, claims = await records_and_claims(events)
    assert (rows, claims) == expected
    assert [row[0] for row in rows] == ["R00000001", "R00000002", "R00000003"]
    assert claims == {str(item.envelope.event_id) for item in work}
    recorded = [e for e in await stored_envelopes(app) if e["type"] == "ServiceRecorded"]
    by_attendance = {(e["payload"]["shift_id"], e["payload"]["volunteer_number"]): e for e in recorded}
    assert len(recorded) == len(by_attendance) == 3
    for item in work:
        event = by_attendance[(item.event.shift_id, item.event.volunteer_number)]
        assert event["correlation_id"] == str(item.envelope.correlation_id)
        assert event["actor"] == "system:dispatch"


async def test_a_claimed_event_and_an_attendance_with_a_record_are_skipped_and_take_no_number(dispatch) -> None:
    _, app = dispatch
    events = app.state.runtime.store
    reactor = subscribers.records_reactor(events)
    first, second, third = await attended(events)
    async with events.transaction() as tx:  # the first applied before; the second's record drawn up by another event
        await reactor._apply(tx, first)
        await subscribers.draw_up_record(tx, second.envelope, second.event)
    before, _ = await records_and_claims(events)

    await reactor.apply_batch([first, second, third])

    rows, claims = await records_and_claims(events)
    assert rows[:2] == before
    assert [row[0] for row in rows] == ["R00000001", "R00000002", "R00000003"]
    assert (rows[2][3], rows[2][1]) == (third.event.shift_id, third.event.volunteer_number)
    assert claims == {str(item.envelope.event_id) for item in (first, second, third)}
    assert len([e for e in await stored_envelopes(app) if e["type"] == "ServiceRecorded"]) == 3


async def test_a_batch_whose_event_was_claimed_meanwhile_keeps_nothing(dispatch, monkeypatch) -> None:
    _, app = dispatch
    events = app.state.runtime.store
    reactor = subscribers.records_reactor(events)
    work = await attended(events)
    drafting = subscribers.records.draft_records

    async def claimed_meanwhile(*args: Any) -> Any:  # another replica claims the second after our read
        drafts = await drafting(*args)
        async with events.transaction() as tx:
            await reactor._apply(tx, work[1])
        return drafts

    monkeypatch.setattr(subscribers.records, "draft_records", claimed_meanwhile)

    with pytest.raises(IntegrityError):
        await reactor.apply_batch(work)

    rows, claims = await records_and_claims(events)
    assert [(row[0], row[3], row[1]) for row in rows] == [("R00000001", shift(0), BOB)]  # the other replica's
    assert claims == {str(work[1].envelope.event_id)}


async def test_a_batch_waits_while_scans_come_at_a_rushs_pace_but_no_longer_than_its_limit(
    dispatch, monkeypatch
) -> None:
    _, app = dispatch
    events = app.state.runtime.store
    reactor = subscribers.records_reactor(events)
    monkeypatch.setattr(reactor, "PACE_SECONDS", 0.01)
    monkeypatch.setattr(reactor, "MOST_DEFERRED", 3600.0)
    work = await attended(events)
    rushing = asyncio.Event()
    rushing.set()

    async def rush() -> None:  # scans begun at 1,000 a second
        while rushing.is_set():
            attendance.ScanPace.begun += 5
            await asyncio.sleep(0.005)

    rush_task = asyncio.create_task(rush())
    batch = asyncio.create_task(reactor.apply_batch(work))
    for _ in range(20):  # a few of its paces, then a look
        await asyncio.sleep(0.01)
    assert not batch.done()
    assert await records_and_claims(events) == ([], set())

    rushing.clear()
    await rush_task
    await batch
    rows, claims = await records_and_claims(events)
    assert len(rows) == len(claims) == 3

    monkeypatch.setattr(reactor, "MOST_DEFERRED", 0.05)
    more = [
        Work(item.msg, item.envelope.model_copy(update={"event_id": uuid.uuid4()}), item.event, item.handler)
        for item in work
    ]
    rushing.set()
    rush_task = asyncio.create_task(rush())
    try:
        # The rush goes on (a minute is only there to fail rather than hang): the batch is written.
        await asyncio.wait_for(reactor.apply_batch(more), 60)
        assert not rush_task.done()
    finally:
        rushing.clear()
        await rush_task
    assert len((await records_and_claims(events))[1]) == 6
