"""The whole city under a generated load while every part of it is killed at random moments:
each service SIGKILLed and restarted at least five times, nats-server three times. Afterwards
every acknowledged command has its events in the streams exactly once, nothing is there that was
never sent, every points balance is what the rules give for the confirmed hours, reporting's live
figures equal a rebuild from zero, and every consumer has drained.

`make test` runs it with a load that fits the suite's time (~8,000 events); the full run:

    BEACON_FAULT_EVENTS=100000 .venv/bin/python -m pytest -m faults -s tests/faults/test_chaos.py
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats
import pytest

from services.dispatch.attendance import ShiftCodes
from services.points import rules
from shared.bus import DEAD_LETTER_STREAM
from shared.replay import last_sequence
from tests.faults import checks
from tests.faults.chaos import NATS, Chaos
from tests.faults.city import ProcessCity
from tests.faults.load import EVENTS_PER_VOLUNTEER, SHIFTS_PER_SERIES, CityLoad, Commands, Ledger
from tests.infra.auth import admin

EVENTS = int(os.environ.get("BEACON_FAULT_EVENTS", "8000"))
KILLS_PER_SERVICE = 5
NATS_RESTARTS = 3
# Nearly half the events from volunteers' whole way through the ledger, the rest from shift series.
VOLUNTEERS = max(20, int(EVENTS * 0.45) // EVENTS_PER_VOLUNTEER)
SERIES = max(1, (EVENTS - VOLUNTEERS * EVENTS_PER_VOLUNTEER) // SHIFTS_PER_SERIES)
CHAOS_SECONDS = max(60.0, EVENTS / 500)

pytestmark = [pytest.mark.faults, pytest.mark.nats]


def once_each(messages: list[checks.Message], key: Any) -> Counter[Any]:
    return Counter(key(m) for m in messages)


def expected_ledger(confirmed: list[checks.Message]) -> dict[str, tuple[int, Decimal, int]]:
    """Points, hours and time-credit minutes per volunteer, by the rules (no district has set a
    rule: Beacon's default prices every day), from the confirmations in stream order."""
    totals: dict[str, tuple[int, Decimal, int]] = defaultdict(lambda: (0, Decimal(0), 0))
    day_points: Counter[tuple[str, str]] = Counter()
    for m in confirmed:
        p = m.payload
        rule = rules.default_rule(m.envelope["org_path"][0])
        hours = Decimal(p["hours"])
        uncapped = rules.points_for(rule, hours, p["field"], p["group_served"], p["service_date"])
        earned = rules.capped(rule, uncapped, day_points[p["volunteer_number"], p["service_date"]])
        day_points[p["volunteer_number"], p["service_date"]] += earned
        points, total_hours, minutes = totals[p["volunteer_number"]]
        totals[p["volunteer_number"]] = (points + earned, total_hours + hours, minutes + int(hours * 60))
    return totals


async def figures(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    answers = {}
    for path in ("/figures/370300", "/figures/370303", "/figures/370303001001", "/figures/370303/children"):
        response = await client.get(url + path)
        assert response.status_code == 200, response.text
        answers[path] = response.json()
    return answers


@pytest.mark.timeout(420 + EVENTS // 50)
async def test_nothing_is_lost_or_counted_twice_while_every_part_is_killed_under_load(tmp_path: Path) -> None:
    city = ProcessCity(tmp_path / "city")
    await asyncio.to_thread(city.start)
    started = time.monotonic()
    nc = None
    try:
        ledger = Ledger()
        urls = {name: service.url for name, service in city.services.items()}
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
            commands = Commands(session, urls, ledger, patience=180)
            codes = ShiftCodes(base64.b64decode(os.environ["BEACON_SHIFT_CODE_SECRET"]))
            load = CityLoad(commands, codes, VOLUNTEERS, SERIES)
            await load.set_up()
            chaos = Chaos(city, KILLS_PER_SERVICE, NATS_RESTARTS, CHAOS_SECONDS)
            chaos_task = asyncio.ensure_future(chaos.run())
            try:
                await load.run(keep_going=lambda: not chaos.finished)
            finally:
                await chaos_task
        loaded = time.monotonic()

        await asyncio.to_thread(city.wait_ready)
        nc = await nats.connect(city.nats.url)
        js = nc.jetstream()
        behind = await checks.drain(js, city.data, timeout=240)
        assert behind == [], f"not drained: {behind}"
        drained = time.monotonic()

        streams = {stream: await checks.read_whole(nc, stream) for stream in checks.STREAMS}
        everything = [m for messages in streams.values() for m in messages]
        types = {stream: Counter(m.type for m in messages) for stream, messages in streams.items()}
        print(f"\n{len(everything)} events: " + "; ".join(f"{s} {dict(c)}" for s, c in types.items()))
        print(f"load: {VOLUNTEERS} volunteers, {ledger.shifts_requested} shifts requested, {ledger.requests} requests, "
              f"{ledger.lost_answers} answers lost and sent again; scans {dict(load.outcomes)}")  # fmt: skip
        print(f"faults: {dict(chaos.done)} in {CHAOS_SECONDS:.0f}s\n  " + "\n  ".join(chaos.log))
        print(
            f"timings: load {loaded - started:.0f}s ({', '.join(f'{k} {v:.0f}s' for k, v in load.timings.items())}), drain {drained - loaded:.0f}s"
        )
        assert (
            all(chaos.done[name] >= KILLS_PER_SERVICE for name in city.services) and chaos.done[NATS] >= NATS_RESTARTS
        )

        # Exactly once: no event id twice in a stream, no aggregate version twice.
        for stream, messages in streams.items():
            assert checks.duplicates(messages) == {}, f"{stream} holds events twice"
            versions = Counter(
                (m.envelope["aggregate_type"], m.aggregate, m.envelope["aggregate_version"]) for m in messages
            )
            assert [v for v, n in versions.items() if n > 1] == [], f"{stream}: an aggregate version twice"
        # What each service committed is in its stream, and its stream holds nothing else.
        for service in ("registry", "dispatch", "points"):
            stored = {event_id for event_id, _, _ in checks.stored_events(city.database(service))}
            published = {m.envelope["event_id"] for m in streams[service.upper()]}
            assert stored - published == set(), f"{service}: committed, never published"
            assert published - stored == set(), f"{service}: published, never committed"

        r, d, p = streams["REGISTRY"], streams["DISPATCH"], streams["POINTS"]
        acked, attempted = ledger.acked, ledger.attempted
        assert set(types["REGISTRY"]) <= {"OrgUnitCreated", "SiteOpened", "VolunteerRegistered", "VolunteerVerified"}
        assert set(types["DISPATCH"]) <= {
            "ActivityScheduled", "ShiftOpened", "VolunteerSignedUp", "VolunteerCheckedIn", "VolunteerCheckedOut",
            "ServiceRecorded", "ServiceHoursConfirmed",
        }  # fmt: skip
        assert set(types["POINTS"]) <= {"PointsAccountOpened", "ServiceCredited", "StarLevelAwarded"}

        registered = once_each(checks.of_type(r, "VolunteerRegistered"), lambda m: m.aggregate)
        assert all(registered[n] == 1 for n in acked["register"])
        assert set(registered) == attempted["registered_as"] and len(registered) == len(attempted["register"])
        verified = once_each(checks.of_type(r, "VolunteerVerified"), lambda m: m.aggregate)
        assert all(verified[n] == 1 for n in acked["verify"]) and set(verified) <= attempted["verify"]
        assert set(verified.values()) == {1}
        for kind, event_type in (("org_unit", "OrgUnitCreated"), ("site", "SiteOpened")):
            made = once_each(checks.of_type(r, event_type), lambda m: m.aggregate)
            assert set(made) == attempted[kind] and set(made.values()) == {1}

        opened = once_each(checks.of_type(d, "ShiftOpened"), lambda m: m.aggregate)
        assert all(opened[s] == 1 for s in acked["shift"]) and set(opened.values()) == {1}
        assert len(opened) <= ledger.shifts_requested
        scheduled = once_each(checks.of_type(d, "ActivityScheduled"), lambda m: m.aggregate)
        assert all(scheduled[a] == 1 for a in acked["activity"]) and set(scheduled.values()) == {1}
        signed = once_each(
            checks.of_type(d, "VolunteerSignedUp"), lambda m: (m.aggregate, m.payload["volunteer_number"])
        )
        assert all(signed[pair] == 1 for pair in acked["sign_up"]) and set(signed) <= attempted["sign_up"]
        assert set(signed.values()) == {1}
        for kind, event_type in (("check_in", "VolunteerCheckedIn"), ("check_out", "VolunteerCheckedOut")):
            scanned = once_each(checks.of_type(d, event_type), lambda m: m.payload["volunteer_number"])
            assert all(scanned[n] == 1 for n in acked[kind]) and set(scanned) <= attempted[kind]
            assert set(scanned.values()) == {1}, f"{event_type} twice"
        # Each check-out drawn up once by dispatch's own subscriber; each record confirmed once.
        drawn_up = once_each(checks.of_type(d, "ServiceRecorded"), lambda m: m.payload["volunteer_number"])
        assert drawn_up == once_each(checks.of_type(d, "VolunteerCheckedOut"), lambda m: m.payload["volunteer_number"])
        confirmations = checks.of_type(d, "ServiceHoursConfirmed")
        confirmed = once_each(confirmations, lambda m: m.aggregate)
        assert all(confirmed[record] == 1 for record in acked["confirm"]) and set(confirmed) <= attempted["confirm"]
        assert set(confirmed.values()) == {1}
        assert all(m.payload["minutes"] == ledger.confirmed_minutes[m.aggregate] for m in confirmations)
        assert len(confirmations) == VOLUNTEERS  # every volunteer went the whole way

        # Points reacted to each once: an account per registration, a credit per confirmation.
        accounts = once_each(checks.of_type(p, "PointsAccountOpened"), lambda m: m.aggregate)
        assert accounts == registered
        credited = once_each(checks.of_type(p, "ServiceCredited"), lambda m: m.payload["record_id"])
        assert credited == confirmed

        # Every balance is what the rules give for the confirmed hours.
        expected = expected_ledger(confirmations)
        async with httpx.AsyncClient(headers=admin(), timeout=30) as client:
            semaphore = asyncio.Semaphore(16)

            async def account(number: str) -> tuple[str, tuple[int, Decimal, int]]:
                async with semaphore:
                    answer = (await client.get(f"{city.url('points')}/accounts/{number}")).json()
                return number, (answer["balance"], Decimal(answer["hours"]), answer["time_credit_minutes"])

            balances = dict(await asyncio.gather(*(account(n) for n in registered)))
            wrong = {
                n: (balances[n], expected.get(n, (0, Decimal(0), 0)))
                for n in balances
                if balances[n] != expected.get(n, (0, Decimal(0), 0))
            }
            assert wrong == {}, f"balances differ from the rules (found, expected): {dict(list(wrong.items())[:10])}"
            print(
                f"balances: {len(balances)} accounts, {sum(b[0] for b in balances.values())} points as the rules give"
            )

            # Reporting's live figures equal a rebuild from zero.
            reporting = city.url("reporting")
            live = await figures(client, reporting)
            assert live["/figures/370303"]["figures"]["volunteers.registered"] == len(registered)
            assert (await client.post(f"{reporting}/admin/rebuild")).status_code == 202
            deadline = time.monotonic() + 120
            while (status := (await client.get(f"{reporting}/admin/rebuild")).json())["state"] == "running":
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.5)
            assert status["state"] == "done", status
            assert await figures(client, reporting) == live

        assert await last_sequence(js, DEAD_LETTER_STREAM) == 0, "something was dead-lettered"
        assert await checks.lagging(js, city.data) == []
    finally:
        if nc is not None:
            await nc.close()
        await asyncio.to_thread(city.stop)
