"""Rate limits over the HTTP API: 429 with Retry-After beyond a caller's share, for placing orders
and checking in (per account) and signing in (per address); other callers go on."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.dispatch.app import create_app as dispatch_app
from services.registry.app import create_app as registry_app
from shared.settings import ServiceSettings
from tests.infra.auth import staff, volunteer
from tests.infra.city import registry_settings, running


async def test_placing_orders_and_checking_in_are_limited_per_account(nats_url: str, tmp_path: Path) -> None:
    app = dispatch_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'dispatch.db'}"))
    async with running(app, "dispatch") as client:
        placing = [await client.post("/orders", json={}, headers=staff("busy")) for _ in range(11)]
        assert [r.status_code for r in placing] == [422] * 10 + [429]  # the burst of 10, then refused
        refused = placing[-1]
        assert int(refused.headers["Retry-After"]) >= 1 and refused.json()["title"] == "TooManyAttempts"
        assert (await client.post("/orders", json={}, headers=staff("another"))).status_code == 422

        scans = [await client.post("/scans", json={}, headers=volunteer("V00000001")) for _ in range(21)]
        assert [r.status_code for r in scans] == [422] * 20 + [429]
        assert (await client.post("/scans", json={}, headers=volunteer("V00000002"))).status_code == 422
        document = app.openapi()["paths"]["/scans"]["post"]
        assert document["x-beacon-rate-limit"] == {"name": "check-in", "per_minute": 30, "burst": 20}
        assert "429" in document["responses"]


async def test_signing_in_is_limited_per_address(nats_url: str, tmp_path: Path) -> None:
    settings = registry_settings(nats_url, f"sqlite:///{tmp_path / 'registry.db'}")
    app = registry_app(settings)
    async with running(app, "registry"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as anyone:
            tries: list[httpx.Response] = []
            while len(tries) < 60 and (not tries or tries[-1].status_code != 429):
                tries.append(
                    await anyone.post("/auth/token", data={"username": f"u{len(tries)}", "password": "wrong!!"})
                )
    # Different usernames, one address: its burst of 20 (and what refilled meanwhile), then refused.
    assert tries[-1].status_code == 429 and int(tries[-1].headers["Retry-After"]) >= 1
    assert {r.status_code for r in tries[:-1]} == {401} and len(tries) > 20
