"""Wiring of the points service."""

from __future__ import annotations

from fastapi import FastAPI

import shared.events  # noqa: F401  (registers the catalog)
from services.points import api, store, subscribers
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.subscriber import subscribe


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("points")
    runtime = ServiceRuntime(settings, store.schema, consumes=("registry",))
    subscribe(runtime.broker, subscribers.reactor(runtime.store), "registry")
    return runtime.create_app(api.router, title="Beacon points", description="Points accounts and ledger.")
