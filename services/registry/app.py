"""Wiring of the registry service: settings, store, bus, routes."""

from __future__ import annotations

from fastapi import FastAPI

import shared.events  # noqa: F401  (registers the catalog)
from services.registry import api, store
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = (settings or ServiceSettings()).for_service("registry")
    runtime = ServiceRuntime(settings, store.schema)
    return runtime.create_app(api.router, title="Beacon registry", description="Org tree, practice sites, volunteers.")
