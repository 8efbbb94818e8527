"""A small city for tests that run several services: its org tree, staff headers, verified
volunteers registered through registry's API, and running an app under test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.factories import resident_id
from tests.infra.auth import ADMIN, staff

STAFF = staff()
TREE = """code,parent_code,level,name,population,party_members
370300,,city,淄博市,4700000,300000
370303,370300,district,张店区,1000000,60000
370303001000,370303,street,车站街道,80000,5000
370303001001,370303001000,community,和平社区,8000,500
"""
COMMUNITY, STREET, DISTRICT = "370303001001", "370303001000", "370303"


@contextlib.asynccontextmanager
async def running(app: Any, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", headers=ADMIN) as client:
            yield client


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def verified_volunteer(registry: httpx.AsyncClient, n: int) -> str:
    body = {
        "name": "李四", "id_number": resident_id(f"3703031985060{n}002"), "phone": f"1381234{n:04d}",
        "community_code": COMMUNITY, "skills": ["elder_care"], "consent": True,
    }  # fmt: skip
    number = (await ok(await registry.post("/volunteers", json=body, headers=STAFF)))["volunteer_number"]
    await ok(await registry.post(f"/volunteers/{number}/verify", headers=STAFF))
    return number


def registry_settings(nats_url: str, database_url: str) -> Any:
    """Registry's settings for a test: its store, NATS and the suite's personal-data keys."""
    from services.registry.app import RegistrySettings
    from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY

    return RegistrySettings(
        nats_url=nats_url, database_url=database_url,
        personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def registry_with_tree(nats_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Registry running, with the small city's tree imported: a client as the city's admin."""
    from services.registry.app import create_app

    async with running(create_app(registry_settings(nats_url, database_url)), "registry") as registry:
        await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
        yield registry
