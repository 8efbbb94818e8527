"""Wiring of the points service: store, bus, the ledger's follower of dispatch, jobs, routes."""

from __future__ import annotations

from fastapi import FastAPI

import shared.events  # noqa: F401  (registers the catalog)
from services.points import handlers, store, subscribers
from services.points.api import router
from services.points.books import RuleCache
from shared.envelope import utcnow
from shared.runtime import ServiceRuntime, clock_job
from shared.settings import ServiceSettings
from shared.subscriber import subscribe

# Expiry is by calendar day; looking every hour catches midnight within the hour.
EXPIRY_EVERY_SECONDS = 3600.0


def create_app(settings: ServiceSettings | None = None, *, clock_every: float = EXPIRY_EVERY_SECONDS) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("points")
    runtime = ServiceRuntime(settings, store.schema, consumes=("registry", "dispatch"))
    events = runtime.store
    rule_cache = RuleCache()
    subscribe(runtime.broker, subscribers.registry_reactor(events, rule_cache), "registry")
    follower = subscribers.ledger_follower(events, rule_cache)

    async def ledger(nc):  # noqa: ANN001, ANN202
        await follower.follow(nc, "dispatch")

    runtime.add_worker(ledger)
    runtime.add_worker(clock_job("expired points", lambda: handlers.expire_due(events, utcnow()), clock_every))
    app = runtime.create_app(
        router,
        title="Beacon points",
        description="Points, time credits and stars for confirmed service: rules, the double-entry ledger, the shop.",
    )
    app.state.rule_cache = rule_cache
    app.state.ledger = follower
    app.state.clock = utcnow
    return app
