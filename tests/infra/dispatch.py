"""Dispatch in a test: the app on a real store and NATS with a clock the test holds, and the rows
that stand in for what dispatch hears from registry (sites, verified volunteers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.dispatch import store
from services.dispatch.app import create_app
from services.dispatch.domain import KnownVolunteer
from shared.settings import ServiceSettings
from tests.infra.auth import ADMIN
from tests.infra.nats import streams_exist


@dataclass
class Clock:
    """The server's clock, held still by the test and moved on when it says."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@contextlib.asynccontextmanager
async def dispatch_app(nats_url: str, database_url: str, now: datetime) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Clock]]:
    await streams_exist(nats_url, "registry", "points")
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=database_url))
    clock = Clock(now)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://dispatch", headers=ADMIN) as client:
        app.state.clock = clock
        yield client, app, clock


async def know_site(app: Any, site_id: str, path: tuple[str, ...], *, open_: bool = True) -> None:
    """Stands in for registry's SiteOpened, which dispatch's reactor turns into this row."""
    async with app.state.runtime.store.transaction() as tx:
        await tx.conn.execute(
            store.sites.insert().values(
                site_id=site_id, org_unit_code=path[-1], org_path="/".join(path), level="station", kind="community", open=open_
            )
        )


async def know_volunteer(app: Any, number: str, path: tuple[str, ...], status: str = "verified") -> None:
    """Stands in for registry's VolunteerRegistered and VolunteerVerified (tests/e2e follows those)."""
    async with app.state.runtime.store.transaction() as tx:
        await store.save_volunteer(tx.conn, KnownVolunteer(number, path[-1], path, "18_34", ("traffic_guidance",)))
        await store.change_volunteer(tx.conn, number, status=status)
