"""A real NATS server with JetStream for the tests: a container where Docker answers, else a
nats-server process on a free port with its own store directory."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.natsserver import LocalNatsServer
from tests.infra.docker import docker_available


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    if docker_available():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer("nats:2.11-alpine").with_command("-js").with_exposed_ports(4222)
        with container:
            wait_for_logs(container, "Server is ready")
            yield f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"
        return
    with tempfile.TemporaryDirectory(prefix="beacon-nats-") as store, LocalNatsServer(Path(store)) as server:
        yield server.url


@contextlib.contextmanager
def restartable_nats_server() -> Iterator[LocalNatsServer]:
    """A nats-server process the test can kill and restart on the same port and store."""
    with tempfile.TemporaryDirectory(prefix="beacon-nats-") as store:
        server = LocalNatsServer(Path(store)).start()
        try:
            yield server
        finally:
            server.stop()


async def streams_exist(nats_url: str, *contexts: str) -> None:
    """Declare the streams of services a test does not run, as they would at their start: a
    service's subscribers start once every stream it follows exists."""
    import nats

    from shared.bus import StreamSettings, context_stream, ensure_stream

    nc = await nats.connect(nats_url)
    try:
        for context in contexts:
            await ensure_stream(nc.jetstream(), context_stream(context, StreamSettings()))
    finally:
        await nc.close()
