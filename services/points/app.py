"""Wiring of the points service: store, bus, the ledger's follower of dispatch, jobs, routes."""

from __future__ import annotations

from fastapi import FastAPI
from nats.aio.client import Client

import shared.events  # noqa: F401  (registers the catalog)
from services.points import handlers, store, subscribers, timebank
from services.points.api import routers
from services.points.books import RuleCache
from shared.audit import audit_router
from shared.envelope import utcnow
from shared.leadership import Leadership
from shared.runtime import ServiceRuntime, clock_job
from shared.settings import ServiceSettings
from shared.subscriber import subscribe

# Expiry is by calendar day; looking every hour catches midnight within the hour.
EXPIRY_EVERY_SECONDS = 3600.0
RESERVATIONS_EVERY_SECONDS = 300.0


def create_app(settings: ServiceSettings | None = None, *, clock_every: float = EXPIRY_EVERY_SECONDS) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("points")
    runtime = ServiceRuntime(settings, store.schema, consumes=("registry", "dispatch"))
    events = runtime.store
    rule_cache = RuleCache()
    registry = subscribers.registry_reactor(events, rule_cache)
    subscribe(runtime.broker, registry, "registry")
    runtime.reads(f"{registry.name}-registry", "registry", registry.handlers.__contains__)
    ledger = subscribers.ledger_follower(events, rule_cache)
    orders = subscribers.orders_follower(events)

    async def post_service_records(nc: Client) -> None:
        await ledger.follow(nc, "dispatch")

    async def follow_orders(nc: Client) -> None:
        await orders.follow(nc, "dispatch")

    # Each follower runs in one replica at a time, the two in different ones when there are two.
    followers = Leadership(runtime.engine, "points")
    followers.add(ledger.name, post_service_records)
    followers.add(orders.name, follow_orders)
    runtime.add_worker(followers.run)
    for follower in (ledger, orders):
        runtime.reads(follower.name, "dispatch", follower.handles, subject=follower.subject, durable=False)
    runtime.metrics.watch_follower(ledger, "dispatch")
    runtime.metrics.watch_follower(orders, "dispatch")
    runtime.add_worker(clock_job("expired points", lambda: handlers.expire_due(events, utcnow()), clock_every))
    runtime.add_worker(
        clock_job("unused reservations", lambda: timebank.release_unused(events, utcnow()), RESERVATIONS_EVERY_SECONDS)
    )
    app = runtime.create_app(
        audit_router("account", "/accounts/{aggregate_id}/audit", "ledger"),
        *routers(),
        title="Beacon points",
        description="Points, time credits and stars for confirmed service: rules, the double-entry ledger, the shop.",
    )
    app.state.rule_cache = rule_cache
    app.state.ledger = ledger
    app.state.followers = followers
    app.state.clock = utcnow
    return app
