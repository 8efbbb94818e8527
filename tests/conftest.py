"""Fixtures: a real NATS JetStream and a real PostgreSQL for the session, fresh stores per test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

import shared.events  # noqa: F401  (registers the catalog)
from shared.eventstore import EventStore
from tests.factories import event_store
from tests.infra.auth import TEST_PRIVATE_KEY, TEST_PUBLIC_KEY
from tests.infra.nats import SecuredNats, nats_server, nats_server_with_users, production_nats_server
from tests.infra.postgres import postgres_server, throwaway_database

# Every event the suite makes is checked for personal data as it is made (see the module).
pytest_plugins = ["tests.infra.personal_data"]

# Dispatch signs its shifts' QR codes with this key wherever a test starts it on PostgreSQL
# (on SQLite it would make a development key beside the database file).
os.environ.setdefault("BEACON_SHIFT_CODE_SECRET", "dGVzdC1zaGlmdC1jb2RlLXNlY3JldC0zMi1ieXRlcyE=")

# Registry signs access tokens with the suite's key pair wherever a test starts it, and every
# service verifies them with its public half: a token from tests.infra.auth and one from
# registry's /auth/token are good alike (without these, registry on SQLite makes a pair of its own).
_TOKEN_KEYS = Path(tempfile.mkdtemp(prefix="beacon-test-token-keys-"))
atexit.register(shutil.rmtree, _TOKEN_KEYS, ignore_errors=True)
(_TOKEN_KEYS / "signing.pem").write_bytes(TEST_PRIVATE_KEY)
(_TOKEN_KEYS / "verifying.pem").write_bytes(TEST_PUBLIC_KEY)
os.environ.setdefault("BEACON_JWT_PRIVATE_KEY_FILE", str(_TOKEN_KEYS / "signing.pem"))
os.environ.setdefault("BEACON_JWT_PUBLIC_KEY_FILE", str(_TOKEN_KEYS / "verifying.pem"))


@pytest.fixture
def nats_url() -> Iterator[str]:
    """A fresh server per test: our streams refuse purges, so tests cannot share one."""
    with nats_server() as url:
        yield url


@pytest.fixture
def nats_with_users() -> Iterator[SecuredNats]:
    """A fresh server enforcing deploy/nats/users.conf, with a new key per service, no TLS."""
    with nats_server_with_users() as server:
        yield server


@pytest.fixture
def production_nats() -> Iterator[SecuredNats]:
    """A fresh server on deploy/nats/production.conf (TLS, users), with a throwaway certificate."""
    with production_nats_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty store: every store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    async with throwaway_database(admin_url) as url:
        yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    """An event store with nothing but the event store's tables, on each database."""
    events = event_store(database_url)
    await events.create_tables()
    yield events
    await events.engine.dispose()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
def unique() -> str:
    """A token that keeps one test's streams and consumers apart from another's."""
    import uuid

    return uuid.uuid4().hex[:8]
