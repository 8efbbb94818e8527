"""Scans at once, as at the lantern festival's gate: on SQLite the scans decided while a write
commits are written together (services/dispatch/handlers/attendance.py); each volunteer is still
checked in and out exactly once, a double scan changes nothing, each event carries its own
request's correlation id and trace, and a batch one of whose writes fails keeps nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from services.dispatch import store
from services.dispatch.handlers.attendance import _ScanBatch
from shared.envelope import EventEnvelope, utcnow
from shared.eventstore import ConcurrencyConflict, EventStore
from shared.logs import CORRELATION_HEADER
from tests.infra.auth import volunteer
from tests.integration import test_dispatch_activities_api as activities
from tests.integration.test_dispatch_activities_api import code_now, night_with

dispatch = activities.dispatch  # the fixture: dispatch with a site and six volunteers it knows
NUMBERS = [f"V{n:08d}" for n in range(1, 7)]


async def envelopes_of(app: Any, event_type: str) -> list[EventEnvelope]:
    events: EventStore = app.state.runtime.store
    table = events.schema.events
    async with events.engine.connect() as conn:
        rows = await conn.execute(select(table.c.envelope).where(table.c.event_type == event_type))
        return [EventEnvelope.model_validate_json(envelope) for (envelope,) in rows]


async def traceparents_of(app: Any, event_ids: list[str]) -> dict[str, str]:
    events: EventStore = app.state.runtime.store
    outbox = events.schema.outbox
    async with events.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.event_id, outbox.c.traceparent).where(outbox.c.event_id.in_(event_ids))
        )
        return {str(event_id): traceparent for event_id, traceparent in rows}


async def scan_all(client: Any, code: str, numbers: list[str]) -> list[tuple[str, str, int, str, str]]:
    """Each volunteer scans twice at once, every request with a correlation id and trace of its
    own: (number, correlation id, status, result, trace id) for each."""

    async def one(number: str) -> tuple[str, str, int, str, str]:
        correlation_id, trace_id = str(uuid.uuid4()), uuid.uuid4().hex
        headers = {
            **volunteer(number),
            CORRELATION_HEADER: correlation_id,
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        }
        response = await client.post("/scans", json={"code": code, "volunteer_number": number}, headers=headers)
        return number, correlation_id, response.status_code, response.json().get("result", response.text), trace_id

    return list(await asyncio.gather(*(one(number) for number in numbers for _ in range(2))))


async def test_volunteers_scanning_at_once_are_each_checked_in_and_out_once_under_their_own_request(dispatch) -> None:
    client, app, clock = dispatch
    shift_id = await night_with(client, clock, *NUMBERS)

    ins = await scan_all(client, await code_now(client, shift_id), NUMBERS)
    clock.move(seconds=30 * 60)  # 20 minutes into the shift
    outs = await scan_all(client, await code_now(client, shift_id), NUMBERS)

    for answers, done in ((ins, "checked_in"), (outs, "checked_out")):
        assert all(status == 200 for _, _, status, _, _ in answers), answers
        results = Counter((number, result) for number, _, _, result, _ in answers)
        assert results == Counter({**{(n, done): 1 for n in NUMBERS}, **{(n, "unchanged"): 1 for n in NUMBERS}})
        # The event of each volunteer's effective scan carries that request's correlation id and trace.
        effective = {
            number: (correlation, trace) for number, correlation, _, result, trace in answers if result == done
        }
        kind = "VolunteerCheckedIn" if done == "checked_in" else "VolunteerCheckedOut"
        recorded = await envelopes_of(app, kind)
        assert sorted(e.payload["volunteer_number"] for e in recorded) == NUMBERS
        traceparents = await traceparents_of(app, [str(e.event_id) for e in recorded])
        for envelope in recorded:
            correlation, trace = effective[envelope.payload["volunteer_number"]]
            assert str(envelope.correlation_id) == correlation
            assert traceparents[str(envelope.event_id)].split("-")[1] == trace

    roster = (await client.get(f"/shifts/{shift_id}/attendance")).json()["items"]
    assert [(a["volunteer_number"], a["minutes"]) for a in roster] == [(n, 20) for n in NUMBERS]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_batch_one_of_whose_writes_fails_keeps_nothing_and_the_others_decide_again(dispatch) -> None:
    _, app, _ = dispatch
    events: EventStore = app.state.runtime.store
    table = store.attendances
    held = asyncio.Event()

    async def occupy(tx: Any) -> None:
        await held.wait()  # keeps the write lock while the batch below gathers

    async def check_in(number: str, fails: bool = False) -> Any:
        async def write(tx: Any) -> None:
            row = {"shift_id": "SH00000001", "volunteer_number": number, "checked_in_at": utcnow()}
            await tx.conn.execute(table.insert().values(**row))
            if fails:
                raise RuntimeError(f"{number}'s write failed")

        return write

    first = asyncio.ensure_future(_ScanBatch.write(events, "SH00000009.V00000009", occupy))
    await asyncio.sleep(0.05)
    batch = [
        asyncio.ensure_future(_ScanBatch.write(events, f"SH00000001.{n}", await check_in(n, fails=n == NUMBERS[1])))
        for n in NUMBERS[:3]
    ]
    await asyncio.sleep(0.05)
    held.set()
    await first
    outcomes = await asyncio.gather(*batch, return_exceptions=True)

    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[0], ConcurrencyConflict) and isinstance(outcomes[2], ConcurrencyConflict)
    async with events.engine.connect() as conn:
        assert (await conn.execute(select(table.c.volunteer_number))).all() == []
