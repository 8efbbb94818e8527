"""The services' NATS users (deploy/nats/users.conf) on a real nats-server with fresh keys: each
may do what its code does and nothing more. No events on another context's subjects, no stream
deleted or purged, no stream read that it does not consume, no other service's replies; and the
four services run under their users without a single violation, over TLS with production.conf.

A refused publish or request is dropped by the server, which tells the client asynchronously
(`-ERR 'Permissions Violation ...'`, through nats-py's error callback, in lower case): the
request itself only times out. A request answered after it makes sure its error has arrived
(nats-py's `flush()` writes its PING ahead of commands still buffered, so it is no such barrier).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from services.dispatch.app import create_app as dispatch_app
from services.points.app import create_app as points_app
from services.registry.app import RegistrySettings
from services.registry.app import create_app as registry_app
from services.reporting.app import create_app as reporting_app
from shared.bus import (
    CONSUMER,
    CONTEXTS,
    DEAD_LETTER_STREAM,
    RETRY_STREAM,
    StreamSettings,
    context_stream,
    dead_letter_stream,
    ensure_stream,
    inbox_prefix,
    retry_stream,
    send_back,
    stream_name,
)
from shared.settings import ServiceSettings
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY
from tests.infra.city import DISTRICT, TREE, ok, running, verified_volunteer
from tests.infra.nats import SecuredNats
from tests.infra.waiting import eventually

pytestmark = pytest.mark.nats

SERVICES = ("registry", "dispatch", "points", "reporting")
OWNS = {"registry": "registry", "dispatch": "dispatch", "points": "points", "reporting": None}
# The streams each service reads: its subscribers and followers in services/*/app.py.
CONSUMES = {
    "registry": ("dispatch",),
    "dispatch": ("registry", "dispatch", "points"),
    "points": ("registry", "dispatch"),
    "reporting": CONTEXTS,
}
REFUSED_WITHIN = 0.1  # a refused request never gets its reply: how long to wait for it


@dataclass
class User:
    nc: Client
    js: JetStreamContext
    impatient_js: JetStreamContext  # for requests the server drops: gives up after REFUSED_WITHIN
    violations: list[str]

    async def refused(self, *attempts: Awaitable[Any]) -> list[str]:
        """Run requests the server must drop: each times out; return the violations reported."""
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert all(isinstance(result, nats.errors.TimeoutError) for result in results), results
        return await self.reported()

    async def reported(self) -> list[str]:
        """The violations reported for everything sent so far (and forget them)."""
        with contextlib.suppress(NotFoundError):  # any answer will do: every user may ask this
            await self.js.stream_info(DEAD_LETTER_STREAM)
        reported, self.violations[:] = sorted(self.violations), []
        return reported


@contextlib.asynccontextmanager
async def connected_as(server: SecuredNats, service: str) -> AsyncIterator[User]:
    violations: list[str] = []

    async def on_error(error: Exception) -> None:
        violations.append(str(error))

    nc = await nats.connect(
        server.url,
        nkeys_seed=str(server.seed_file(service)),
        inbox_prefix=inbox_prefix(service),
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        yield User(nc, nc.jetstream(), nc.jetstream(timeout=REFUSED_WITHIN), violations)
    finally:
        await nc.close()


def publish_refused(subject: str) -> str:
    return f'nats: permissions violation for publish to "{subject.lower()}"'


def subscription_refused(subject: str) -> str:
    return f'nats: permissions violation for subscription to "{subject.lower()}"'


async def declare_streams(server: SecuredNats) -> None:
    """Every stream, each declared by its owner as at its start."""
    for context in CONTEXTS:
        async with connected_as(server, context) as owner:
            await ensure_stream(owner.js, dead_letter_stream(StreamSettings()))
            await ensure_stream(owner.js, context_stream(context, StreamSettings()))


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_declares_its_streams_and_publishes_its_events_and_dead_letters(
    nats_with_users: SecuredNats, service: str
) -> None:
    async with connected_as(nats_with_users, service) as user:
        js = user.js
        # Created, then brought to a changed configuration: both as ensure_stream does it.
        for settings in (StreamSettings(), StreamSettings(duplicate_window_seconds=60)):
            await ensure_stream(js, dead_letter_stream(settings))
            if own := OWNS[service]:
                await ensure_stream(js, context_stream(own, settings))
        if own := OWNS[service]:
            ack = await js.publish(
                f"{own}.370303.x.happened", b"{}", headers={"Nats-Msg-Id": "1"}, stream=stream_name(own)
            )
            assert (ack.stream, ack.seq) == (stream_name(own), 1)
        if CONSUMES[service]:
            ack = await js.publish(f"deadletter.{service}.registry.370303.x.happened", b"{}", stream=DEAD_LETTER_STREAM)
            assert ack.stream == DEAD_LETTER_STREAM
        assert user.violations == []


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_is_refused_publishing_on_another_contexts_subjects(
    nats_with_users: SecuredNats, service: str
) -> None:
    await declare_streams(nats_with_users)
    others = [context for context in CONTEXTS if context != OWNS[service]]
    subjects = [f"{context}.370303.x.happened" for context in others]
    async with connected_as(nats_with_users, service) as user:
        attempts = [
            user.impatient_js.publish(s, b"{}", stream=stream_name(c)) for s, c in zip(subjects, others, strict=True)
        ]
        assert await user.refused(*attempts) == sorted(publish_refused(s) for s in subjects)
    async with connected_as(nats_with_users, "reporting") as reader:
        for context in others:
            assert (await reader.js.stream_info(stream_name(context))).state.messages == 0


@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_may_delete_or_purge_a_stream(nats_with_users: SecuredNats, service: str) -> None:
    await declare_streams(nats_with_users)
    streams = [stream_name(context) for context in CONTEXTS] + [DEAD_LETTER_STREAM]
    async with connected_as(nats_with_users, service) as user:
        attempts = [user.impatient_js.delete_stream(s) for s in streams] + [
            user.impatient_js.purge_stream(s) for s in streams
        ]
        expected = [publish_refused(f"$JS.API.STREAM.{verb}.{s}") for verb in ("DELETE", "PURGE") for s in streams]
        assert await user.refused(*attempts) == sorted(expected)
    async with connected_as(nats_with_users, "reporting") as reader:
        for name in streams:
            assert (await reader.js.stream_info(name)).config.name == name


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_reads_no_stream_it_does_not_consume_and_no_other_services_replies(
    nats_with_users: SecuredNats, service: str
) -> None:
    await declare_streams(nats_with_users)
    # Nobody consumes the dead letters: operators read them.
    unread = [stream_name(c) for c in CONTEXTS if c not in CONSUMES[service]] + [DEAD_LETTER_STREAM]
    async with connected_as(nats_with_users, service) as user:
        attempts = [user.impatient_js.add_consumer(s, ConsumerConfig(ack_policy=AckPolicy.NONE)) for s in unread]
        assert await user.refused(*attempts) == sorted(publish_refused(f"$JS.API.CONSUMER.CREATE.{s}") for s in unread)

        # Events are read through JetStream consumers only, replies only in the service's own inbox.
        others = [inbox_prefix(other) + ".>" for other in SERVICES if other != service]
        subjects = [f"{context}.>" for context in CONTEXTS] + ["deadletter.>", "_INBOX.>", *others]
        for subject in subjects:
            await user.nc.subscribe(subject)
        assert await user.reported() == sorted(subscription_refused(s) for s in subjects)


@pytest.mark.parametrize(
    ("service", "durables"),
    [
        ("points", [("DISPATCH", "dispatch-records-dispatch"), ("DISPATCH", "registry-records-dispatch")]),
        (
            "reporting",
            [
                ("REGISTRY", "dispatch-registry"),
                ("REGISTRY", "points-registry"),
                ("DISPATCH", "dispatch-records-dispatch"),
                ("DISPATCH", "registry-records-dispatch"),
                ("POINTS", "dispatch-time-bank-points"),
            ],
        ),
    ],
)
async def test_a_reader_can_neither_pull_from_nor_delete_nor_reconfigure_another_services_durable(
    nats_with_users: SecuredNats, service: str, durables: list[tuple[str, str]]
) -> None:
    async with connected_as(nats_with_users, service) as user:
        pull = json.dumps({"batch": 1}).encode()

        def reconfigured(stream: str, durable: str) -> dict[str, Any]:
            config = ConsumerConfig(name=durable, durable_name=durable, ack_policy=AckPolicy.NONE)
            return {"stream_name": stream, "config": config.as_dict()}

        attempts = [
            *(user.impatient_js.delete_consumer(s, d) for s, d in durables),
            *(user.nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{s}.{d}", pull, timeout=REFUSED_WITHIN) for s, d in durables),
            # Naming the durable on the subject, or only in the body of the nameless create:
            *(user.nc.request(f"$JS.API.CONSUMER.CREATE.{s}.{d}", json.dumps(reconfigured(s, d)).encode(), timeout=REFUSED_WITHIN) for s, d in durables),
            *(user.nc.request(f"$JS.API.CONSUMER.CREATE.{s}", json.dumps(reconfigured(s, d)).encode(), timeout=REFUSED_WITHIN) for s, d in durables),
        ]  # fmt: skip
        expected = [
            *(publish_refused(f"$JS.API.CONSUMER.{verb}.{s}.{d}") for verb in ("DELETE", "MSG.NEXT", "CREATE") for s, d in durables),
            *(publish_refused(f"$JS.API.CONSUMER.CREATE.{s}") for s, _ in durables),
        ]  # fmt: skip
        assert await user.refused(*attempts) == sorted(expected)


async def answered(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """The first 200 for `path`, or the last answer at the deadline."""
    return await eventually(lambda: client.get(path), lambda r: r.status_code == 200)


def service_app(name: str, server: SecuredNats, tmp_path: Path) -> Any:
    common = {
        "nats_url": server.url,
        "nats_nkey_seed_file": str(server.seed_file(name)),
        "database_url": f"sqlite:///{tmp_path / name}.db",
    }
    if name == "registry":
        keys = {"personal_data_key": TEST_PERSONAL_DATA_KEY, "id_index_key": TEST_ID_INDEX_KEY}
        return registry_app(RegistrySettings(**common, **keys))
    builders = {"dispatch": dispatch_app, "points": points_app, "reporting": reporting_app}
    return builders[name](ServiceSettings(**common))


async def dead_letters_by_consumer(js: JetStreamContext) -> set[tuple[str, str]]:
    """(consumer, original stream) of each dead letter, from the stream's subjects."""
    info = await js.stream_info(DEAD_LETTER_STREAM, subjects_filter="deadletter.>")
    # deadletter.<consumer>.<original subject>, whose first token names its context
    return {(subject.split(".")[1], subject.split(".")[2].upper()) for subject in info.state.subjects or {}}


async def test_every_service_runs_under_its_own_user_without_a_violation(
    nats_with_users: SecuredNats, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        for name in SERVICES:
            clients[name] = await stack.enter_async_context(running(service_app(name, nats_with_users, tmp_path), name))
        for client in clients.values():
            assert (await answered(client, "/readyz")).status_code == 200

        # Registry's relay publishes; dispatch's and points' durables take and ack; points' relay
        # publishes the account; reporting's readers follow both streams.
        registry = clients["registry"]
        await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
        number = await verified_volunteer(registry, 1)
        assert (await answered(clients["dispatch"], f"/volunteers/{number}")).status_code == 200
        assert (await answered(clients["points"], f"/accounts/{number}")).status_code == 200

        def settled(response: httpx.Response) -> bool:
            figures = response.json().get("figures", {}) if response.status_code == 200 else {}
            return figures.get("volunteers.registered") == figures.get("points.accounts_opened") == 1

        assert settled(await eventually(lambda: clients["reporting"].get(f"/figures/{DISTRICT}"), settled))

        # A rebuild, its worker processes connecting as reporting too.
        assert (await clients["reporting"].post("/admin/rebuild")).status_code == 202
        rebuilt = await eventually(
            lambda: clients["reporting"].get("/admin/rebuild"), lambda r: r.json()["state"] in ("done", "failed")
        )
        assert (rebuilt.json()["error"], rebuilt.json()["active_generation"]) == (None, 2)
        assert settled(await clients["reporting"].get(f"/figures/{DISTRICT}"))

        # Something unreadable in every stream, and among dispatch's service records (which registry's
        # durable and points' ledger follow alone): each consumer of it dead-letters it and goes on.
        for context, aggregate in (*((c, "order") for c in CONTEXTS), ("dispatch", "service_record")):
            async with connected_as(nats_with_users, context) as owner:
                await owner.js.publish(
                    f"{context}.370303.{aggregate}.placed", b"not an event", stream=stream_name(context)
                )
        expected = {
            ("dispatch", "REGISTRY"), ("points", "REGISTRY"), ("projection-figures", "REGISTRY"),
            ("dispatch-records", "DISPATCH"), ("points-orders", "DISPATCH"), ("projection-figures", "DISPATCH"),
            ("registry-records", "DISPATCH"), ("points-ledger", "DISPATCH"),
            ("dispatch-time-bank", "POINTS"), ("projection-figures", "POINTS"),
        }  # fmt: skip
        async with connected_as(nats_with_users, "reporting") as reader:
            found = await eventually(lambda: dead_letters_by_consumer(reader.js), lambda found: found >= expected)
        assert found == expected

        # An operator sends dispatch's letter back (`beacon dlq retry`): dispatch takes it from the
        # retry stream under its own user, and refuses it again.
        async with connected_as(nats_with_users, "operator") as operator:
            info = await operator.js.stream_info(DEAD_LETTER_STREAM)
            letters = [await operator.js.get_msg(DEAD_LETTER_STREAM, n) for n in range(1, info.state.last_seq + 1)]
            (letter,) = [m for m in letters if m.headers[CONSUMER] == "dispatch"]
            assert await send_back(operator.js, letter.seq) == "dispatch"
            await eventually(
                lambda: operator.js.stream_info(DEAD_LETTER_STREAM), lambda i: i.state.messages == len(letters) + 1
            )
            assert operator.violations == []
    # Stopping too (readers delete their consumers) stayed within the permissions.
    assert nats_with_users.violations() == []


async def test_an_operator_reads_the_state_and_the_dead_letters_and_sends_letters_back_and_nothing_more(
    nats_with_users: SecuredNats,
) -> None:
    await declare_streams(nats_with_users)
    async with connected_as(nats_with_users, "registry") as registry:
        await ensure_stream(registry.js, retry_stream(StreamSettings()))
        await registry.js.publish("registry.370303.x.happened", b"{}", stream="REGISTRY")
        await registry.js.publish("deadletter.registry.dispatch.370303.x.happened", b"{}", stream=DEAD_LETTER_STREAM,
                                  headers={CONSUMER: "registry-records"})  # fmt: skip
    async with connected_as(nats_with_users, "operator") as operator:
        names = {info.config.name for info in await operator.js.streams_info()}
        assert names >= {"REGISTRY", "DISPATCH", "POINTS", DEAD_LETTER_STREAM, RETRY_STREAM}
        assert await operator.js.consumers_info("REGISTRY") == []
        assert (await operator.js.get_msg(DEAD_LETTER_STREAM, 1)).headers[CONSUMER] == "registry-records"
        assert await send_back(operator.js, 1) == "registry-records"
        assert (await operator.js.get_msg(RETRY_STREAM, 1)).subject == "retry.registry-records"
        assert operator.violations == []

        attempts = [
            operator.impatient_js.publish("registry.370303.x.happened", b"{}", stream="REGISTRY"),
            operator.impatient_js.publish("deadletter.x.registry.370303.x.happened", b"{}", stream=DEAD_LETTER_STREAM),
            operator.impatient_js.get_msg("REGISTRY", 1),
            operator.impatient_js.delete_stream(DEAD_LETTER_STREAM),
            operator.impatient_js.purge_stream(RETRY_STREAM),
            operator.impatient_js.add_consumer("REGISTRY", ConsumerConfig(ack_policy=AckPolicy.NONE)),
            operator.impatient_js.add_stream(name="MINE", subjects=["mine.>"]),
        ]
        expected = [
            publish_refused("registry.370303.x.happened"), publish_refused("deadletter.x.registry.370303.x.happened"),
            publish_refused("$JS.API.STREAM.MSG.GET.REGISTRY"), publish_refused(f"$JS.API.STREAM.DELETE.{DEAD_LETTER_STREAM}"),
            publish_refused(f"$JS.API.STREAM.PURGE.{RETRY_STREAM}"), publish_refused("$JS.API.CONSUMER.CREATE.REGISTRY"),
            publish_refused("$JS.API.STREAM.CREATE.MINE"),
        ]  # fmt: skip
        assert await operator.refused(*attempts) == sorted(expected)


async def test_production_configuration_serves_only_the_services_users_and_only_over_tls(
    production_nats: SecuredNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = production_nats.url.removeprefix("tls://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    info = json.loads((await reader.readline()).decode().removeprefix("INFO "))
    writer.close()
    assert info["tls_required"] is True and info["auth_required"] is True

    # The services trust the server's CA as production.conf says: through SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(production_nats.ca_file))

    async def quietly(_: Exception) -> None:
        pass

    with pytest.raises(nats.errors.Error) as refused:  # TLS is fine; without a user's key, no entry
        await nats.connect(production_nats.url, allow_reconnect=False, error_cb=quietly)
    assert str(refused.value) == "nats: 'Authorization Violation'"
    async with connected_as(production_nats, "dispatch") as dispatch:  # registry follows dispatch's stream
        await ensure_stream(dispatch.js, context_stream("dispatch", StreamSettings()))
    async with running(service_app("registry", production_nats, tmp_path), "registry") as registry:
        assert (await answered(registry, "/readyz")).status_code == 200
        await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
        async with connected_as(production_nats, "registry") as user:
            info = await eventually(lambda: user.js.stream_info("REGISTRY"), lambda i: i.state.messages == 4)
            assert info.state.messages == 4  # the tree's four org units, relayed over TLS
    assert production_nats.violations() == []
