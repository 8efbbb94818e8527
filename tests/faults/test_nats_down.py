"""NATS away: the services still accept commands (their outboxes grow), say they are degraded,
and everything drains when NATS is back: the events in the streams once, points and reporting
caught up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import pytest

from shared.citytime import city_date
from tests.faults import checks
from tests.faults.city import ProcessCity
from tests.faults.load import COMMUNITY, DISTRICT, FIELD, GROUP, SITE, STREET, resident_id
from tests.infra.auth import ADMIN

pytestmark = [pytest.mark.faults, pytest.mark.nats]

REGISTRATIONS = 30


async def ok(response: httpx.Response, *statuses: int) -> dict:
    assert response.status_code in (statuses or (200, 201)), response.text
    return response.json()


async def test_commands_are_accepted_while_nats_is_away_and_everything_drains_when_it_returns(tmp_path: Path) -> None:
    city = ProcessCity(tmp_path / "city")
    await asyncio.to_thread(city.start)
    nc = None
    try:
        registry, dispatch, points, reporting = (city.url(n) for n in ("registry", "dispatch", "points", "reporting"))
        async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
            org = [
                {"code": "370300", "level": "city", "name": "淄博市", "population": 4_700_000, "party_members": 310_000},
                {"code": DISTRICT, "level": "district", "name": "张店区", "population": 1_000_000, "party_members": 62_000, "parent_code": "370300"},
                {"code": STREET, "level": "street", "name": "车站街道", "population": 90_000, "party_members": 5_500, "parent_code": DISTRICT},
                {"code": COMMUNITY, "level": "community", "name": "和平社区", "population": 9_000, "party_members": 550, "parent_code": STREET},
            ]  # fmt: skip
            for unit in org:
                await ok(await client.post(f"{registry}/org-units", json=unit), 201)
            site = {
                "site_id": SITE,
                "org_unit_code": COMMUNITY,
                "level": "station",
                "kind": "community",
                "name": "和平站",
            }
            await ok(await client.post(f"{registry}/sites", json=site), 201)
            today = city_date(datetime.now(UTC))
            activity = {
                "site_id": SITE, "kind": "regular", "theme": "civilised_traffic", "field": FIELD, "group_served": GROUP,
                "starts_on": today.isoformat(), "ends_on": (today + timedelta(days=1)).isoformat(),
            }  # fmt: skip
            deadline = time.monotonic() + 30
            while (scheduled := await client.post(f"{dispatch}/activities", json=activity)).status_code == 404:
                assert time.monotonic() < deadline, "dispatch has not heard of the site"  # from registry's events
                await asyncio.sleep(0.2)
            await ok(scheduled, 201)
            nc = await nats.connect(city.nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
            assert await checks.drain(nc.jetstream(), city.data, timeout=30) == []

            city.nats.kill()
            depths = []
            for n in range(1, REGISTRATIONS + 1):
                body = {
                    "name": f"志愿者{n:05d}", "id_number": resident_id(n), "phone": f"139{n:08d}", "community_code": COMMUNITY,
                    "political_status": "masses", "consent": True,
                }  # fmt: skip
                await ok(await client.post(f"{registry}/volunteers", json=body), 201)
                if n % 10 == 0:
                    ready = await client.get(f"{registry}/readyz")
                    assert ready.status_code == 503
                    answer = ready.json()
                    assert answer["status"] == "degraded" and answer["checks"]["nats"] == "disconnected"
                    depths.append(answer["checks"]["outbox_depth"])
            assert depths == [10, 20, 30]  # the outbox holds what NATS could not take
            await ok(await client.post(f"{dispatch}/activities", json=activity), 201)
            ready = await client.get(f"{dispatch}/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["outbox_depth"] == 1
            for name in ("points", "reporting"):
                assert (await client.get(f"{city.url(name)}/readyz")).json()["status"] == "degraded"

            await asyncio.to_thread(city.nats.start)
            assert await checks.drain(nc.jetstream(), city.data, timeout=90) == []
            await asyncio.to_thread(city.wait_ready, timeout=60)

            registered = Counter(
                m.aggregate for m in checks.of_type(await checks.read_whole(nc, "REGISTRY"), "VolunteerRegistered")
            )
            assert len(registered) == REGISTRATIONS and set(registered.values()) == {1}
            opened = Counter(
                m.aggregate for m in checks.of_type(await checks.read_whole(nc, "POINTS"), "PointsAccountOpened")
            )
            assert opened == registered
            assert len(checks.of_type(await checks.read_whole(nc, "DISPATCH"), "ActivityScheduled")) == 2
            for number in registered:
                assert (await ok(await client.get(f"{points}/accounts/{number}")))["balance"] == 0
            figures = (await ok(await client.get(f"{reporting}/figures/{DISTRICT}")))["figures"]
            assert figures["volunteers.registered"] == REGISTRATIONS
            assert figures["points.accounts_opened"] == REGISTRATIONS
    finally:
        if nc is not None:
            await nc.close()
        await asyncio.to_thread(city.stop)
