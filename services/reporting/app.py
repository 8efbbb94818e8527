"""Wiring of the reporting service: a projector per projection, following every stream in partitions."""

from __future__ import annotations

import asyncio
import os
from functools import partial

from fastapi import FastAPI
from nats.aio.client import Client
from sqlalchemy import MetaData

import shared.events  # noqa: F401  (registers the catalog)
from services.reporting import api
from services.reporting.api import RebuildStatus
from services.reporting.projection import Figures
from shared.eventstore import EventStoreSchema
from shared.leadership import Leadership
from shared.replay import Projector
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


def build(settings: ServiceSettings) -> tuple[ServiceRuntime, Projector, Leadership]:
    runtime = ServiceRuntime(settings, EventStoreSchema(MetaData()), owns_stream=False, consumes=Figures.contexts)
    projector = Projector(
        Figures(),
        runtime.engine,
        # A rebuild shares the streams and their ranges out among processes, one per core (each
        # fold is CPU-bound).
        rebuild_processes=os.cpu_count() or 1,
        nats_connect=settings.nats_connect_options(),
    )
    runtime.on_start(projector.setup)
    runtime.metrics.watch_projector(projector)
    for context in Figures.contexts:
        runtime.reads(projector.consumer_name, context, projector.projection.handles, durable=False)
    # Each partition is followed in one replica at a time; replicas share the partitions out.
    followers = Leadership(runtime.engine, "reporting")
    count = partitions()
    for partition in range(count):
        followers.add(f"partition-{partition}-of-{count}", partial(follow_partition, projector, (partition, count)))
    runtime.add_worker(followers.run)
    return runtime, projector, followers


def partitions() -> int:
    """How many partitions reporting's work is split into (BEACON_REPORTING_PARTITIONS, default 2):
    as many as replicas are meant to fold at once."""
    return max(1, int(os.environ.get("BEACON_REPORTING_PARTITIONS", "2")))


async def follow_partition(projector: Projector, share: tuple[int, int], nc: Client) -> None:
    """One partition of reporting's work: the share's districts of every stream split by
    district, and in the first partition the streams followed whole (registry's: see
    services/reporting/projection.py), each district's events folded in one replica at a time."""
    whole = [c for c in Figures.contexts if c not in Figures.partitioned] if share[0] == 0 else []
    await asyncio.gather(
        *(projector.follow(nc, context, share) for context in Figures.partitioned),
        *(projector.follow(nc, context) for context in whole),
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("reporting")
    runtime, projector, followers = build(settings)
    app = runtime.create_app(
        api.router, title="Beacon reporting", description="Every published figure, from the streams."
    )
    app.state.projector = projector
    app.state.followers = followers
    app.state.rebuild = RebuildStatus()
    return app
