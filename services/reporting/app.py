"""Wiring of the reporting service: a projector per projection, following every stream."""

from __future__ import annotations

import os

from fastapi import FastAPI
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
    runtime = ServiceRuntime(
        settings, EventStoreSchema(MetaData()), owns_stream=False, consumes=Figures.contexts
    )
    projector = Projector(
        Figures(),
        runtime.engine,
        # A rebuild shares the streams out among processes, one per core (each fold is CPU-bound).
        rebuild_processes=min(os.cpu_count() or 1, len(Figures.contexts)),
        nats_connect=settings.nats_connect_options(),
    )
    runtime.on_start(projector.setup)
    runtime.metrics.watch_projector(projector)
    # Each stream is followed in one replica at a time; replicas share the streams out.
    followers = Leadership(runtime.engine, "reporting")
    for context in Figures.contexts:
        followers.add(context, lambda nc, context=context: projector.follow(nc, context))
        runtime.reads(projector.consumer_name, context, projector.projection.handles, durable=False)
    runtime.add_worker(followers.run)
    return runtime, projector, followers


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("reporting")
    runtime, projector, followers = build(settings)
    app = runtime.create_app(api.router, title="Beacon reporting", description="Every published figure, from the streams.")
    app.state.projector = projector
    app.state.followers = followers
    app.state.rebuild = RebuildStatus()
    return app
