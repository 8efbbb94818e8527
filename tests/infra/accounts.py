"""Registry's sign-in in a test: the app over a real store and NATS with a clock the test holds,
and a cheaper argon2 (the suite hashes hundreds of passwords;
what production hashes with is checked on its own)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any, Literal

import httpx
from argon2 import PasswordHasher

from services.registry import credentials
from services.registry.app import create_app
from shared.auth import TokenVerifier
from tests.infra.auth import TEST_PUBLIC_KEY
from tests.infra.city import registry_settings
from tests.infra.dispatch import Clock

# Checks the tokens registry signs: the suite's key pair (tests/conftest.py gives it to registry).
VERIFIER = TokenVerifier(TEST_PUBLIC_KEY)


class QuickHasher(PasswordHasher):
    """argon2id at its lowest cost, keeping count of the passwords it checks."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.checks: list[str] = []  # the hash each check was against (appending is thread-safe)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.checks.append(str(hash))
        return super().verify(hash, password)


@contextlib.contextmanager
def quick_argon2() -> Iterator[QuickHasher]:
    """A quick argon2 in registry for the block; `credentials._hasher` is it meanwhile."""
    cheap = QuickHasher()
    kept = credentials._hasher
    credentials._hasher = cheap
    credentials._stand_in_hash.cache_clear()
    try:
        yield cheap
    finally:
        credentials._hasher = kept
        credentials._stand_in_hash.cache_clear()


@contextlib.asynccontextmanager
async def registry_app(
    nats_url: str, database_url: str, now: datetime
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Clock]]:
    settings = registry_settings(nats_url, database_url)
    app = create_app(settings)
    clock = Clock(now)
    transport = httpx.ASGITransport(app=app)
    with quick_argon2():
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://registry") as client,
        ):
            app.state.clock = clock
            yield client, app, clock
