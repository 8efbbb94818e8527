"""Registry's sign-in in a test: the app over a real store and NATS with a clock the test holds,
callers known by their access tokens, and a cheaper argon2 (the suite hashes hundreds of passwords;
what production hashes with is checked on its own)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from argon2 import PasswordHasher
from fastapi import Header, HTTPException

from services.registry import credentials
from services.registry.app import RegistrySettings, create_app
from shared.auth import Actor, TokenVerifier, Unauthenticated
from shared.web import CurrentActor
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY
from tests.infra.auth import TEST_PUBLIC_KEY
from tests.infra.dispatch import Clock

VERIFIER = TokenVerifier(TEST_PUBLIC_KEY)


async def bearer_actor(authorization: Annotated[str | None, Header(max_length=4000)] = None) -> Actor:
    """The caller named by an access token, as shared.web's CurrentActor is to name them once it
    reads tokens; until then a test puts this in its place."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "no access token")
    try:
        return VERIFIER.actor(token)
    except Unauthenticated as error:
        raise HTTPException(401, error.reason) from None


def callers_by_token(app: Any) -> None:
    app.dependency_overrides[CurrentActor.__metadata__[0].dependency] = bearer_actor


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
    settings = RegistrySettings(
        nats_url=nats_url,
        database_url=database_url,
        personal_data_key=TEST_PERSONAL_DATA_KEY,
        id_index_key=TEST_ID_INDEX_KEY,
    )
    app = create_app(settings)
    callers_by_token(app)
    clock = Clock(now)
    transport = httpx.ASGITransport(app=app)
    with quick_argon2():
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://registry") as client,
        ):
            app.state.clock = clock
            yield client, app, clock
