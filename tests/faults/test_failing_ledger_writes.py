"""The points service while a tenth of its database writes fail for a while: registry's and
dispatch's events keep coming, every failed transaction is retried (the reactor naks with a delay,
the ledger's follower holds its batch), and the final ledger is exact: every account is what the
rules give for its records' final hours, every credit is in the ledger and the stream once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from services.points import rules
from services.points.app import create_app
from shared.bus import DEAD_LETTER_STREAM, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.replay import last_sequence
from shared.settings import ServiceSettings
from tests.factories import PATH, registered
from tests.faults import checks
from tests.faults.failing_writes import FailingWrites
from tests.infra.auth import ADMIN
from tests.infra.points import DispatchRecords, read_books, rebuild
from tests.infra.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.nats]

VOLUNTEERS = 60
RECORDS_EACH = 8
NOW = datetime(2026, 11, 23, 2, tzinfo=UTC)


@pytest.fixture
async def points(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Any, Any]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for context in ("registry", "dispatch"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    async with contextlib.AsyncExitStack() as stack:
        app = create_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'points.db'}"))
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://points", headers=ADMIN)
        )
        await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200)
        yield client, app, js, nc
    await nc.close()


async def publish(js: Any, envelope: Any) -> None:
    subject = catalog.subject_of(envelope)
    await js.publish(
        subject,
        envelope.to_json(),
        headers={"Nats-Msg-Id": str(envelope.event_id)},
        stream=subject.split(".")[0].upper(),
    )


async def test_the_ledger_is_exact_after_a_tenth_of_its_writes_failed_for_a_while(points) -> None:
    client, app, js, nc = points
    runtime = app.state.runtime
    faults = FailingWrites(runtime.engine, rate=0.1)
    faults.on = True

    dispatch = DispatchRecords()
    final_hours: dict[str, tuple[str, date, Decimal]] = {}
    for n in range(1, VOLUNTEERS + 1):
        event = registered(n)
        number = event.volunteer_number
        opened = catalog.envelope(event, aggregate_id=number, aggregate_version=1, org_path=PATH, actor="staff")
        await publish(js, opened)
        for k in range(RECORDS_EACH):
            day = date(2026, 10, 1) + timedelta(days=k)
            envelope, confirmed = dispatch.confirm(number, Decimal(1 + (n + k) % 5), NOW, day=day)
            await publish(js, envelope)
            final_hours[confirmed.record_id] = (number, day, confirmed.hours)
            if k % 3 == 0:  # some corrected afterwards: an adjustment must follow its confirmation
                adjusted, event = dispatch.adjust(confirmed.record_id, Decimal(2), NOW)
                await publish(js, adjusted)
                final_hours[confirmed.record_id] = (number, day, event.hours)
        await asyncio.sleep(0.02)  # a volunteer at a time: many small transactions, each may fail

    ledger = app.state.ledger
    last = await last_sequence(js, "DISPATCH")
    # The faults last while two thirds are applied, then the store is well again.
    await eventually(lambda: ledger.checkpoint("DISPATCH"), lambda done: done >= 2 * last // 3, timeout=120)
    faults.on = False
    print(f"\ninjected {faults.failed} failures in {faults.writes} write transactions")
    assert faults.failed > 0

    assert await eventually(lambda: ledger.checkpoint("DISPATCH"), lambda done: done == last, timeout=120) == last
    info = await eventually(
        lambda: js.consumer_info("REGISTRY", "points-registry"), lambda i: i.num_pending == 0 and i.num_ack_pending == 0
    )
    assert info.num_pending == 0 and info.num_ack_pending == 0
    assert await eventually(runtime.store.outbox_depth, lambda depth: depth == 0, timeout=60) == 0
    assert await last_sequence(js, DEAD_LETTER_STREAM) == 0, "an event was dead-lettered: the ledger lost it"

    # Every account is what the rules give for its records' final hours (one record a day each).
    expected: defaultdict[str, tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for number, day, hours in final_hours.values():
        points_earned = rules.capped(
            rules.default_rule(PATH[0]),
            rules.points_for(rules.default_rule(PATH[0]), hours, "smart_help_for_elderly", "elderly", day),
            0,
        )
        expected[number] = (expected[number][0] + points_earned, expected[number][1] + hours)
    for n in range(1, VOLUNTEERS + 1):
        number = f"V{n:08d}"
        account = (await client.get(f"/accounts/{number}")).json()
        assert (account["balance"], Decimal(account["hours"])) == expected[number], number
        assert account["time_credit_minutes"] == int(expected[number][1] * 60)

    # The ledger agrees with its own history and its journal; the stream holds each event once.
    books = await read_books(runtime.store)
    accounts, balances = rebuild(books.events)
    assert {n: (a.balance, a.hours) for n, a in accounts.items()} == {
        n: (a.balance, a.hours) for n, a in books.accounts.items()
    }
    assert balances == {k: v for k, v in books.journal_balances.items() if v}
    assert all(books.journal_balances.get(key, 0) == balance for key, balance in books.balances.items())
    assert (await client.get("/ledger/trial-balance")).json()["balanced"] is True
    stream = await checks.read_whole(nc, "POINTS")
    assert checks.duplicates(stream) == {}
    assert {m.envelope["event_id"] for m in stream} == {str(e.event_id) for e in books.events}
    assert Counter(m.aggregate for m in checks.of_type(stream, "PointsAccountOpened")) == Counter(
        f"V{n:08d}" for n in range(1, VOLUNTEERS + 1)
    )
