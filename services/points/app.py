"""Wiring of the points service: store, bus, the ledger's follower of dispatch, jobs, routes."""

from __future__ import annotations

from fastapi import FastAPI
from nats.aio.client import Client
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

import shared.events  # noqa: F401  (registers the catalog)
from services.points import handlers, store, subscribers, timebank
from services.points.api import routers
from services.points.books import RuleCache
from shared.audit import audit_router
from shared.bus import stream_name
from shared.db import is_sqlite
from shared.envelope import utcnow
from shared.leadership import Leadership, Worker
from shared.replay import StreamFollower
from shared.runtime import ServiceRuntime, clock_job
from shared.settings import ServiceSettings
from shared.subscriber import subscribe

# Expiry is by calendar day; looking every hour catches midnight within the hour.
EXPIRY_EVERY_SECONDS = 3600.0
RESERVATIONS_EVERY_SECONDS = 300.0


class PointsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BEACON_", extra="ignore")

    # Ledger followers by volunteer, on PostgreSQL: replicas lead different ones, so up to this
    # many replicas post faster. Each reads the whole service-record stream (about 10 µs of CPU
    # an event it skips): two, for the two replicas points runs, posted 15% faster than four.
    ledger_partitions: int = Field(default=2, ge=1, le=64)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    clock_every: float = EXPIRY_EVERY_SECONDS,
    ledger_partitions: int | None = None,
) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("points")
    runtime = ServiceRuntime(settings, store.schema, consumes=("registry", "dispatch"))
    events = runtime.store
    rule_cache = RuleCache()
    registry = subscribers.registry_reactor(events, rule_cache)
    subscribe(runtime.broker, registry, "registry")
    runtime.reads(f"{registry.name}-registry", "registry", registry.handlers.__contains__)
    # On SQLite one follower: partitions would each read the whole stream to queue on its one writer.
    partitions = 1 if is_sqlite(runtime.engine) else (ledger_partitions or PointsSettings().ledger_partitions)
    ledgers = subscribers.ledger_followers(events, rule_cache, partitions)
    orders = subscribers.orders_follower(events)

    def posting(ledger: StreamFollower) -> Worker:
        async def post_service_records(nc: Client) -> None:
            await subscribers.start_from_whole_ledger(ledger, stream_name("dispatch"))
            await ledger.follow(nc, "dispatch")

        return post_service_records

    async def follow_orders(nc: Client) -> None:
        await orders.follow(nc, "dispatch")

    # Each follower runs in one replica at a time, shared out among the replicas. Orders first: a
    # replica gives back the last added first, so the ledger's partitions are the ones split.
    followers = Leadership(runtime.engine, "points")
    followers.add(orders.name, follow_orders)
    for ledger in ledgers:
        followers.add(ledger.name, posting(ledger))
    runtime.add_worker(followers.run)
    for follower in (*ledgers, orders):
        runtime.reads(follower.name, "dispatch", follower.handles, subject=follower.subject, durable=False)
        runtime.metrics.watch_follower(follower, "dispatch")
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
    app.state.ledgers = ledgers
    app.state.ledger = ledgers[0] if partitions == 1 else None  # the one follower, unpartitioned
    app.state.followers = followers
    app.state.clock = utcnow
    return app
