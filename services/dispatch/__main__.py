import gc

from fastapi import FastAPI

from services.dispatch.app import create_app
from shared.serve import serve
from shared.settings import ServiceSettings


def create_app_with_heap_frozen(settings: ServiceSettings) -> FastAPI:
    """The app, with what is built by then (modules, routes, models: most of the heap, for life)
    moved out of the collector's sight: a full collection then takes a few milliseconds instead of
    pausing every request for ~90 ms, which under a rush of scans (a full collection every few
    seconds) was the bulk of the slowest answers."""
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app


serve("dispatch", create_app_with_heap_frozen)
