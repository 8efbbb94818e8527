"""The skeleton flow across all four services over a real NATS, with their real subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.dispatch.app import create_app as dispatch_app
from services.points.app import create_app as points_app
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from services.reporting.app import create_app as reporting_app
from shared.settings import ServiceSettings
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN
from tests.infra.postgres import database
from tests.infra.waiting import eventually

BUILDERS = {"registry": registry_app, "dispatch": dispatch_app, "points": points_app, "reporting": reporting_app}


@contextlib.asynccontextmanager
async def service(name: str, nats_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    if name == "registry":
        settings = RegistrySettings(
            nats_url=nats_url, database_url=database_url,
            personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
        )
    else:
        settings = ServiceSettings(nats_url=nats_url, database_url=database_url)
    app = BUILDERS[name](settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", headers=ADMIN) as client:
            yield client


@contextlib.asynccontextmanager
async def city(nats_url: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name in BUILDERS:
            url = await stack.enter_async_context(database(kind, name, tmp_path, request))
            clients[name] = await stack.enter_async_context(service(name, nats_url, url))
        for client in clients.values():
            await eventually(lambda c=client: c.get("/readyz"), lambda r: r.status_code == 200)
        yield clients


async def create_tree(registry: httpx.AsyncClient) -> None:
    for body in (
        {"code": "370300", "level": "city", "name": "淄博市", "population": 4_700_000, "party_members": 300_000},
        {"code": "370303", "level": "district", "name": "张店区", "population": 1_000_000, "party_members": 60_000, "parent_code": "370300"},
        {"code": "370303001000", "level": "street", "name": "车站街道", "population": 80_000, "party_members": 5_000, "parent_code": "370303"},
        {"code": "370303001001", "level": "community", "name": "和平社区", "population": 8_000, "party_members": 500, "parent_code": "370303001000"},
    ):
        response = await registry.post("/org-units", json=body)
        assert response.status_code == 201, response.text


def volunteer(n: int, party: bool = False) -> dict[str, object]:
    return {
        "name": "张三",
        "id_number": resident_id(f"370303198506{n:02d}002"),
        "phone": f"1381234{n:04d}",
        "community_code": "370303001001",
        "political_status": "party_member" if party else "masses",
        "skills": ["first_aid"],
        "consent": True,
    }


def settled(response: httpx.Response, volunteers: int) -> bool:
    """Reporting has applied both registry's and points' events for that many volunteers."""
    if response.status_code != 200:
        return False
    figures = response.json()["figures"]
    return figures.get("volunteers.registered") == figures.get("points.accounts_opened") == volunteers


async def registered_count(reporting: httpx.AsyncClient, code: str) -> int:
    response = await reporting.get(f"/figures/{code}")
    return response.json()["figures"].get("volunteers.registered", 0) if response.status_code == 200 else -1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_registering_a_volunteer_reaches_every_service_and_survives_a_rebuild(
    kind: str, nats_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with city(nats_url, kind, tmp_path, request) as services:
        registry, reporting = services["registry"], services["reporting"]
        await create_tree(registry)
        assert await eventually(lambda: registered_count(reporting, "370303"), lambda n: n == 0) == 0

        response = await registry.post("/volunteers", json=volunteer(1, party=True))
        assert response.status_code == 201, response.text
        number = response.json()["volunteer_number"]

        assert await eventually(lambda: registered_count(reporting, "370303"), lambda n: n == 1) == 1
        account = await eventually(lambda: services["points"].get(f"/accounts/{number}"), lambda r: r.status_code == 200)
        assert account.json()["balance"] == 0
        known = await eventually(lambda: services["dispatch"].get(f"/volunteers/{number}"), lambda r: r.status_code == 200)
        assert known.json()["org_path"] == ["370303", "370303001000", "370303001001"]
        assert "id_number" not in known.json() and "name" not in known.json()

        for n in range(2, 5):
            assert (await registry.post("/volunteers", json=volunteer(n))).status_code == 201
        before = await eventually(
            lambda: reporting.get("/figures/370300"), lambda r: settled(r, 4)
        )
        assert before.json()["figures"]["volunteers.registered"] == 4
        assert before.json()["figures"]["volunteers.political_status.party_member"] == 1

        started = await reporting.post("/admin/rebuild")
        assert started.status_code == 202
        status = await eventually(lambda: reporting.get("/admin/rebuild"), lambda r: r.json()["state"] != "running")
        assert status.json()["state"] == "done" and status.json()["active_generation"] == 2
        after = await reporting.get("/figures/370300")
        assert after.json()["figures"] == before.json()["figures"]


async def test_the_rebuild_command_rebuilds_beside_a_running_service(nats_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with city(nats_url, "sqlite", tmp_path, request) as services:
        registry, reporting = services["registry"], services["reporting"]
        await create_tree(registry)
        for n in range(1, 4):
            assert (await registry.post("/volunteers", json=volunteer(n))).status_code == 201
        before = await eventually(
            lambda: reporting.get("/figures/370303"), lambda r: settled(r, 3)
        )
        command = [
            sys.executable, "-m", "services.reporting", "rebuild",
            "--database-url", f"sqlite:///{tmp_path / 'reporting.db'}", "--nats-url", nats_url,
        ]
        result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "rebuilt figures as generation 2" in result.stdout
        assert (await reporting.get("/admin/rebuild")).json()["active_generation"] == 2
        assert (await reporting.get("/figures/370303")).json()["figures"] == before.json()["figures"]
        # The running service follows the new generation.
        assert (await registry.post("/volunteers", json=volunteer(4))).status_code == 201
        after = await eventually(
            lambda: reporting.get("/figures/370303"), lambda r: settled(r, 4)
        )
        assert after.json()["figures"]["volunteers.registered"] == 4


async def test_bad_input_gets_problem_details_naming_the_field(nats_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with city(nats_url, "sqlite", tmp_path, request) as services:
        registry = services["registry"]
        await create_tree(registry)
        bad = {**volunteer(1), "id_number": "370303198506010021"}  # wrong check character
        response = await registry.post("/volunteers", json=bad)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "id_number"

        response = await registry.post("/volunteers", json={**volunteer(1), "phone": "12345"})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "phone"

        assert (await registry.post("/volunteers", json=volunteer(1))).status_code == 201
        again = await registry.post("/volunteers", json=volunteer(1))
        assert again.status_code == 409 and again.json()["volunteer_number"] == "V00000001"

        unknown = await services["reporting"].get("/figures/999999")
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"


async def test_dispatch_follows_a_volunteers_status_certifications_and_moves(nats_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with city(nats_url, "sqlite", tmp_path, request) as services:
        registry, dispatch = services["registry"], services["dispatch"]
        await create_tree(registry)
        other = {"code": "370303001002", "level": "community", "name": "新华社区", "population": 9_000, "party_members": 600, "parent_code": "370303001000"}
        assert (await registry.post("/org-units", json=other)).status_code == 201
        number = (await registry.post("/volunteers", json=volunteer(1))).json()["volunteer_number"]
        await registry.post(f"/volunteers/{number}/verify")
        await registry.post(f"/volunteers/{number}/certifications", json={"certification": "first_aid", "expires_on": "2099-01-01"})
        await registry.post(f"/volunteers/{number}/transfer", json={"to_community_code": "370303001002"})
        await registry.put(f"/volunteers/{number}/profile", json={"political_status": "masses", "skills": ["tutoring"]})

        def caught_up(response: httpx.Response) -> bool:
            return response.status_code == 200 and response.json()["skills"] == ["tutoring"]

        known = (await eventually(lambda: dispatch.get(f"/volunteers/{number}"), caught_up)).json()
        assert known["status"] == "verified"
        assert known["community_code"] == "370303001002"
        assert known["certifications"] == {"first_aid": "2099-01-01"}
        await registry.post(f"/volunteers/{number}/suspend", json={"reason": "no-show"})
        suspended = await eventually(lambda: dispatch.get(f"/volunteers/{number}"), lambda r: r.json()["status"] == "suspended")
        assert suspended.json()["status"] == "suspended"


async def test_destroying_a_volunteers_personal_data_changes_no_reported_figure(nats_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with city(nats_url, "sqlite", tmp_path, request) as services:
        registry, reporting = services["registry"], services["reporting"]
        await create_tree(registry)
        numbers = [(await registry.post("/volunteers", json=volunteer(n, party=n == 1))).json()["volunteer_number"] for n in (1, 2)]
        await eventually(lambda: reporting.get("/figures/370303"), lambda r: settled(r, 2))
        await registry.post(f"/volunteers/{numbers[0]}/deregister", json={"on_request": True})
        shown = await registry.get(f"/volunteers/{numbers[0]}", headers=ADMIN)
        assert shown.json()["personal_data_destroyed"] is True and shown.json()["name"] is None
        # The live figures count the deregistration; rebuilt after the data is gone, they are the same.
        before = await eventually(
            lambda: reporting.get("/figures/370303"), lambda r: r.json()["figures"].get("volunteers.deregistered") == 1
        )
        assert before.json()["figures"]["volunteers.registered"] == 1
        started = await reporting.post("/admin/rebuild")
        assert started.status_code == 202
        await eventually(lambda: reporting.get("/admin/rebuild"), lambda r: r.json()["state"] == "done")
        assert (await reporting.get("/figures/370303")).json()["figures"] == before.json()["figures"]
