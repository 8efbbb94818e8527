"""Dispatch follows registry's practice sites and insurance records over a real NATS, with both
services' real subscribers and stores (SQLite and PostgreSQL): an order nobody accepts climbs
the sites registry opened (past a closed one) up to the district's centre, and waits there,
overdue; a risky order goes only to the volunteer whose insurance registry recorded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.dispatch import store as dispatch_store
from services.dispatch.app import create_app as dispatch_app
from services.dispatch.handlers import orders as handlers
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from shared.envelope import utcnow
from shared.settings import ServiceSettings
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY
from tests.infra.city import COMMUNITY, DISTRICT, STAFF, STREET, TREE, ok, running, verified_volunteer
from tests.infra.nats import streams_exist
from tests.infra.postgres import database
from tests.infra.waiting import eventually

STATION, INSTITUTE, CLOSED_INSTITUTE, CENTRE = "ST-HEPING", "IN-CHEZHAN", "IN-A-OLD", "CE-ZHANGDIAN"


@pytest.fixture(params=["sqlite", "postgresql"])
async def services(request: pytest.FixtureRequest, nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Any]]:
    """Registry and dispatch, each with its own store, on one NATS: (registry, dispatch, dispatch app)."""
    async with contextlib.AsyncExitStack() as stack:
        registry_url = await stack.enter_async_context(database(request.param, "registry", tmp_path, request))
        dispatch_url = await stack.enter_async_context(database(request.param, "dispatch", tmp_path, request))
        registry = await stack.enter_async_context(
            running(
                registry_app(
                    RegistrySettings(
                        nats_url=nats_url, database_url=registry_url,
                        personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
                    )
                ),
                "registry",
            )
        )
        await streams_exist(nats_url, "points")  # dispatch follows points' time bank too
        app = dispatch_app(ServiceSettings(nats_url=nats_url, database_url=dispatch_url))
        dispatch = await stack.enter_async_context(running(app, "dispatch"))
        await eventually(lambda: dispatch.get("/readyz"), lambda r: r.status_code == 200)
        yield registry, dispatch, app


async def open_sites(registry: httpx.AsyncClient) -> None:
    await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
    for site_id, code, level, kind in (
        (CENTRE, DISTRICT, "centre", "district_centre"),
        (CLOSED_INSTITUTE, STREET, "institute", "street_institute"),
        (INSTITUTE, STREET, "institute", "street_institute"),
        (STATION, COMMUNITY, "station", "community"),
    ):
        body = {"site_id": site_id, "org_unit_code": code, "level": level, "kind": kind, "name": site_id, "opened_on": "2025-01-01"}
        await ok(await registry.post("/sites", json=body, headers=STAFF))
    await ok(await registry.post(f"/sites/{CLOSED_INSTITUTE}/close", json={"closed_on": "2025-06-01", "reason": "merged"}))


async def known_sites(app: Any) -> dict[str, tuple[str, str, str, bool]]:
    sites = dispatch_store.sites
    async with app.state.runtime.store.engine.connect() as conn:
        rows = await conn.execute(select(sites.c.site_id, sites.c.level, sites.c.org_unit_code, sites.c.org_path, sites.c.open))
        return {r.site_id: (r.level, r.org_unit_code, r.org_path, bool(r.open)) for r in rows}


def new_order(**changes: object) -> dict[str, object]:
    start = utcnow() + timedelta(days=1)
    return {
        "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": COMMUNITY, "site_id": STATION,
        "window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat(), "headcount": 1,
        "required_skills": ["elder_care"], "risky": True, **changes,
    }


async def test_an_unanswered_risky_order_climbs_the_sites_registry_opened_and_goes_only_to_the_insured(services) -> None:
    registry, dispatch, app = services
    await open_sites(registry)
    insured, uninsured = await verified_volunteer(registry, 1), await verified_volunteer(registry, 2)
    today = utcnow().date()
    cover = {"insurer": "picc", "cover": "accident", "valid_from": str(today - timedelta(days=1)), "valid_until": str(today + timedelta(days=365))}
    await ok(await registry.post(f"/volunteers/{insured}/insurance", json=cover, headers=STAFF))

    # Dispatch learns the sites, closed ones too, with the org path registry published them under.
    sites = await eventually(lambda: known_sites(app), lambda s: len(s) == 4 and not s[CLOSED_INSTITUTE][3])
    assert sites == {
        CENTRE: ("centre", DISTRICT, DISTRICT, True),
        CLOSED_INSTITUTE: ("institute", STREET, f"{DISTRICT}/{STREET}", False),
        INSTITUTE: ("institute", STREET, f"{DISTRICT}/{STREET}", True),
        STATION: ("station", COMMUNITY, f"{DISTRICT}/{STREET}/{COMMUNITY}", True),
    }

    order_id = (await ok(await dispatch.post("/orders", json=new_order(), headers=STAFF)))["order_id"]
    suggested = await eventually(
        lambda: dispatch.get(f"/orders/{order_id}/suggestions"),
        lambda r: [s["volunteer_number"] for s in r.json()["suggestions"]] == [insured] and r.json()["excluded"],
    )
    assert {e["volunteer_number"]: e["reasons"] for e in suggested.json()["excluded"]} == {
        uninsured: ["no insurance record for risky work"]
    }

    # The station sends it to the one insured volunteer, who declines: nobody is left, so it goes
    # to the street's open institute (not the closed one).
    deadline = (utcnow() + timedelta(hours=1)).isoformat()
    await ok(await dispatch.post(f"/orders/{order_id}/dispatch", json={"volunteer_numbers": [insured], "site_id": STATION, "deadline": deadline}, headers=STAFF))
    state = await ok(await dispatch.post(f"/orders/{order_id}/decline", json={"by": insured, "reason": "unavailable"}))
    assert (state["status"], state["site_id"]) == ("placed", INSTITUTE)

    # The institute tries again by hand; nobody answers in time: up to the district's centre.
    deadline = utcnow() + timedelta(minutes=15)
    body = {"volunteer_numbers": [insured], "site_id": INSTITUTE, "deadline": deadline.isoformat()}
    await ok(await dispatch.post(f"/orders/{order_id}/dispatch", json=body, headers=STAFF))
    assert await handlers.time_out_due(app.state.runtime.store, deadline + timedelta(seconds=1)) == [order_id]
    assert (await ok(await dispatch.get(f"/orders/{order_id}")))["site_id"] == CENTRE

    # The centre is the top: declined there, the order waits for staff and is listed overdue.
    body = {"volunteer_numbers": [insured], "site_id": CENTRE, "deadline": (utcnow() + timedelta(hours=1)).isoformat()}
    await ok(await dispatch.post(f"/orders/{order_id}/dispatch", json=body, headers=STAFF))
    state = await ok(await dispatch.post(f"/orders/{order_id}/decline", json={"by": insured, "reason": "unavailable"}))
    assert (state["status"], state["site_id"]) == ("placed", CENTRE)
    order = await ok(await dispatch.get(f"/orders/{order_id}"))
    assert [h["type"] for h in order["history"]] == [
        "OrderPlaced",
        "OrderDispatched", "OrderDeclined", "OrderEscalated",
        "OrderDispatched", "OrderTimedOut", "OrderEscalated",
        "OrderDispatched", "OrderDeclined",
    ]
    assert [h["payload"]["to_site_id"] for h in order["history"] if h["type"] == "OrderEscalated"] == [INSTITUTE, CENTRE]
    assert order["overdue"] is True
    overdue = (await ok(await dispatch.get("/orders", params={"overdue": "true"})))["items"]
    assert [o["order_id"] for o in overdue] == [order_id]
