"""Registry and points on a three-node NATS cluster (deploy/nats/cluster/node.conf, streams and
durable consumers on three replicas): the node leading registry's stream is killed with SIGKILL
while volunteers are being registered, and nothing acknowledged is lost or doubled, the services
go on taking commands and following each other, and the node catches up when it comes back. On
secured-node.conf, the services run under their own users as on a single server."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from services.points.app import create_app as points_app
from services.registry.app import create_app as registry_app
from shared.bus import StreamSettings, context_stream, ensure_stream
from shared.catalog import catalog
from shared.envelope import EventEnvelope
from shared.outbox import RelaySettings
from shared.settings import ServiceSettings
from tests.factories import resident_id
from tests.infra.city import COMMUNITY, STAFF, TREE, ok, registry_settings, running
from tests.infra.nats import NatsCluster, nats_cluster
from tests.infra.waiting import eventually

pytestmark = pytest.mark.nats

BEFORE_THE_KILL, AFTER_THE_ELECTION = 8, 8


def on_the_cluster(service: str, settings: ServiceSettings, cluster: NatsCluster) -> Any:
    """The service's settings given every node, R3 streams, and its own user where there are users."""
    seed = str(cluster.seed_file(service)) if cluster.keys else ""
    changes = {"service": service, "nats_url": cluster.url, "stream_replicas": 3, "nats_nkey_seed_file": seed}
    return settings.model_copy(update=changes)


async def connected_as(service: str, cluster: NatsCluster) -> Client:
    return await nats.connect(**on_the_cluster(service, ServiceSettings(), cluster).nats_connect_options())


@contextlib.asynccontextmanager
async def registry_and_points(cluster: NatsCluster, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Both services running on the cluster, with dispatch's stream there (points follows it)."""
    dispatch = await connected_as("dispatch", cluster)
    await ensure_stream(dispatch.jetstream(), context_stream("dispatch", StreamSettings(replicas=3)))
    await dispatch.close()
    registry_config = registry_settings(cluster.url, f"sqlite:///{tmp_path / 'registry.db'}")
    points_config = ServiceSettings(database_url=f"sqlite:///{tmp_path / 'points.db'}")
    async with (
        running(registry_app(on_the_cluster("registry", registry_config, cluster)), "registry") as registry,
        running(points_app(on_the_cluster("points", points_config, cluster)), "points") as points,
    ):
        for client in (registry, points):
            await eventually(lambda c=client: c.get("/readyz"), lambda r: r.status_code == 200)
        yield registry, points


async def register(registry: httpx.AsyncClient, n: int) -> str:
    born = date(1985, 1, 1) + timedelta(days=n)
    body = {
        "name": "李四", "id_number": resident_id(f"370303{born:%Y%m%d}001"), "phone": f"1391234{n:04d}",
        "community_code": COMMUNITY, "skills": ["elder_care"], "consent": True,
    }  # fmt: skip
    return (await ok(await registry.post("/volunteers", json=body, headers=STAFF)))["volunteer_number"]


async def acknowledged_at_least(count: int, acknowledged: list[str]) -> None:
    async def how_many() -> int:
        return len(acknowledged)

    assert await eventually(how_many, lambda n: n >= count, timeout=30) >= count, "commands stopped being accepted"


async def leader_of(js: JetStreamContext, stream: str) -> str | None:
    try:
        return (await asyncio.wait_for(js.stream_info(stream), 1.0)).cluster.leader
    except (TimeoutError, NatsError):  # no leader yet: nobody answers for the stream
        return None


async def relayed_everything(service: httpx.AsyncClient) -> bool:
    outbox_is_empty = await eventually(
        lambda: service.get("/readyz"),
        lambda r: r.status_code == 200 and r.json()["checks"]["outbox_depth"] == 0,
        timeout=RelaySettings().retry_max_seconds + 15,
    )
    return outbox_is_empty.status_code == 200 and outbox_is_empty.json()["checks"]["outbox_depth"] == 0


async def stored_events(js: JetStreamContext, stream: str) -> list[tuple[str, EventEnvelope]]:
    """Every message of the stream, in order: (its Nats-Msg-Id, its envelope)."""
    last = (await js.stream_info(stream)).state.last_seq
    messages = [await js.get_msg(stream, sequence) for sequence in range(1, last + 1)]
    return [((m.headers or {}).get("Nats-Msg-Id", ""), catalog.parse_envelope(m.data)) for m in messages]


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with nats_cluster() as nodes:
        yield nodes


async def test_killing_the_stream_leader_loses_no_acknowledged_event_and_the_services_go_on(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    nc = await nats.connect(cluster.urls)
    js = nc.jetstream()
    try:
        async with registry_and_points(cluster, tmp_path) as (registry, points):
            await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
            # Three copies of each stream, and of points' durable consumer of registry's.
            for stream in ("REGISTRY", "POINTS", "DEADLETTER"):
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2, (stream, info.cluster)
            durable = await eventually(
                lambda: js.consumer_info("REGISTRY", "points-registry"), lambda info: info.cluster is not None
            )
            assert len(durable.cluster.replicas) == 2, durable.cluster

            acknowledged: list[str] = []
            stop = asyncio.Event()

            async def keep_registering() -> None:
                while not stop.is_set():
                    acknowledged.append(await register(registry, len(acknowledged)))
                    await asyncio.sleep(0.02)  # spread over the election, not all before it

            commands = asyncio.create_task(keep_registering())
            await acknowledged_at_least(BEFORE_THE_KILL, acknowledged)
            leader = (await js.stream_info("REGISTRY")).cluster.leader
            cluster.nodes[leader].kill()
            new_leader = await eventually(
                lambda: leader_of(js, "REGISTRY"), lambda name: name not in (None, leader), timeout=30
            )
            assert new_leader not in (None, leader), "no new leader for registry's stream"
            elected_after = len(acknowledged)
            await acknowledged_at_least(elected_after + AFTER_THE_ELECTION, acknowledged)
            stop.set()
            await commands

            # Points heard of every volunteer through its durable and opened their accounts. A batch
            # the durable handed out through the killed node is lost on the way and comes again
            # once its ack wait is over.
            redelivered_by = durable.config.ack_wait + 15
            for number in acknowledged:
                account = await eventually(
                    lambda n=number: points.get(f"/accounts/{n}"),
                    lambda r: r.status_code == 200,
                    timeout=redelivered_by,
                )
                assert account.status_code == 200, (number, account.text)

            # Once their outboxes are empty (a relay that failed during the election waits up to its
            # longest retry delay, unless a new commit wakes it), each acknowledged registration is
            # in registry's stream once, and each account opened in points' once; no message anywhere
            # is stored twice.
            for client in (registry, points):
                assert await relayed_everything(client), f"{client.base_url.host} still has events to publish"
            registry_events = await stored_events(js, "REGISTRY")
            points_events = await stored_events(js, "POINTS")
            for events in (registry_events, points_events):
                assert all(msg_id == str(envelope.event_id) for msg_id, envelope in events)
                assert [msg_id for msg_id, count in Counter(msg_id for msg_id, _ in events).items() if count > 1] == []
            registered = Counter(e.aggregate_id for _, e in registry_events if e.type == "VolunteerRegistered")
            opened = Counter(e.payload["volunteer_number"] for _, e in points_events if e.type == "PointsAccountOpened")
            assert registered == Counter(acknowledged)
            assert opened == Counter(acknowledged)

            # Back, the node catches up with what it missed from registry and points.
            cluster.nodes[leader].start()
            for stream in ("REGISTRY", "POINTS"):
                last = (await js.stream_info(stream)).state.last_seq
                caught_up = await eventually(
                    lambda s=stream: asyncio.to_thread(cluster.stream_last_sequence, leader, s),
                    lambda sequence, last=last: sequence == last,
                    timeout=30,
                )
                assert caught_up == last, (stream, caught_up, last)
    finally:
        await nc.close()


async def test_the_services_run_on_the_cluster_under_their_own_users(tmp_path: Path) -> None:
    """secured-node.conf: users.conf's users and permissions hold on the cluster as on one server."""
    with nats_cluster(with_users=True) as cluster:
        async with registry_and_points(cluster, tmp_path) as (registry, points):
            await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
            number = await register(registry, 1)
            account = await eventually(lambda: points.get(f"/accounts/{number}"), lambda r: r.status_code == 200)
            assert account.status_code == 200, account.text
        nc = await connected_as("registry", cluster)
        try:
            info = await nc.jetstream().stream_info("REGISTRY")
        finally:
            await nc.close()
        assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2, info.cluster
        assert cluster.violations() == []
        with pytest.raises(NatsError):  # and no one gets in without a user
            await nats.connect(cluster.urls, allow_reconnect=False, connect_timeout=2)
