"""The four services served for real on loopback ports (SQLite stores, a NATS the caller gives),
from an event loop in a thread of its own: for tests that drive them from synchronous code, such
as the demo city's loader and schemathesis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from services.dispatch.app import create_app as dispatch_app
from services.points.app import create_app as points_app
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from services.reporting.app import create_app as reporting_app
from shared.settings import ServiceSettings
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY

SERVICES = ("registry", "dispatch", "points", "reporting")


def _app(name: str, nats_url: str, database_url: str) -> FastAPI:
    if name == "registry":
        return registry_app(
            RegistrySettings(
                nats_url=nats_url, database_url=database_url,
                personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
            )
        )  # fmt: skip
    builder = {"dispatch": dispatch_app, "points": points_app, "reporting": reporting_app}[name]
    return builder(ServiceSettings(nats_url=nats_url, database_url=database_url))


@dataclass(frozen=True)
class Operation:
    """One operation of a service's OpenAPI document, and who may call it (`x-beacon-roles`)."""

    service: str
    method: str
    path: str
    roles: tuple[str, ...]
    has_body: bool

    @property
    def label(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def operations() -> list[Operation]:
    """Every operation of the four services, read off their documents (the apps are built, not
    started)."""
    found = []
    with tempfile.TemporaryDirectory(prefix="beacon-operations-") as data:
        for service in SERVICES:
            app = _app(service, "nats://127.0.0.1:1", f"sqlite:///{Path(data) / service}.db")
            for path, item in app.openapi()["paths"].items():
                for method, operation in item.items():
                    roles = tuple(operation.get("x-beacon-roles", ()))
                    found.append(Operation(service, method.upper(), path, roles, "requestBody" in operation))
    return found


@dataclass
class ServedCity:
    """The running services: each one's app (its state is the test's to set), URL and SQLite file."""

    apps: dict[str, FastAPI] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    databases: dict[str, Path] = field(default_factory=dict)


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def served_city(nats_url: str, data: Path, *, ready_within: float = 60.0) -> Iterator[ServedCity]:
    """Every service started, answering on its port and ready (`/readyz`), until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="served-city", daemon=True)
    thread.start()
    city = ServedCity()
    servers: dict[str, tuple[uvicorn.Server, Future[None]]] = {}
    try:
        for name in SERVICES:
            city.databases[name] = data / f"{name}.db"
            city.apps[name] = app = _app(name, nats_url, f"sqlite:///{city.databases[name]}")
            sock = _listening()
            city.urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
            server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
            servers[name] = server, asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop)
        _wait_ready(city, servers, ready_within)
        yield city
    finally:
        for server, _ in servers.values():
            server.should_exit = True
        for _, serving in servers.values():
            with contextlib.suppress(Exception):
                serving.result(30)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        if thread.is_alive():  # left as it is: closing a loop that runs would only hide why
            raise RuntimeError("the services' event loop did not stop within 30 s: something blocks it")
        loop.close()


async def _cancel_the_rest() -> None:
    """What the services left running (a client library's reader, say) ends before its loop does."""
    rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _wait_ready(city: ServedCity, servers: dict[str, tuple[uvicorn.Server, Future[None]]], within: float) -> None:
    deadline = time.monotonic() + within
    waiting = dict(servers)
    with httpx.Client(timeout=5) as client:
        while waiting:
            for name, (server, serving) in list(waiting.items()):
                if serving.done():
                    serving.result()  # raises what stopped it
                    raise RuntimeError(f"{name} stopped while starting")
                if server.started and client.get(f"{city.urls[name]}/readyz").status_code == 200:
                    del waiting[name]
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready within {within:.0f} s: {', '.join(waiting)}")
            time.sleep(0.05)
