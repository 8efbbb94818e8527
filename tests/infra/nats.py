"""A real NATS server with JetStream for the tests: a container where Docker answers, else a
nats-server process on a free port with its own store directory; and a three-node cluster of such
processes (`nats_cluster`)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deploy.nats_keys import seed_file, write_service_keys
from shared.natsserver import LocalNatsServer, free_port
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


class NatsCluster:
    """Three nats-server processes on deploy/nats/cluster/node.conf, on loopback: any node can be
    killed and started again on its own port and store."""

    def __init__(self, nodes: dict[str, LocalNatsServer], monitoring: dict[str, int], keys: Path | None) -> None:
        self.nodes = nodes
        self.monitoring = monitoring
        self.keys = keys  # with users: this run's seeds

    def seed_file(self, service: str) -> Path:
        assert self.keys is not None, "a cluster without users has no seeds"
        return seed_file(self.keys, service)

    def violations(self) -> list[str]:
        return [
            line
            for node in self.nodes.values()
            if node.log_file is not None
            for line in node.log_file.read_text().splitlines()
            if "Violation" in line
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes.values()]

    @property
    def url(self) -> str:
        """Every node, as BEACON_NATS_URL takes them."""
        return ",".join(self.urls)

    def monitor(self, name: str, endpoint: str) -> dict[str, Any]:
        """A node's own monitoring report (/jsz, /healthz...): what that node holds, not its leaders' view."""
        url = f"http://127.0.0.1:{self.monitoring[name]}/{endpoint}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:  # /healthz answers 503 with why, as JSON
            return json.load(error)

    def stream_last_sequence(self, name: str, stream: str) -> int | None:
        """The last sequence of `stream` in that node's own store (None if it holds no replica)."""
        report = self.monitor(name, "jsz?accounts=true&streams=true")
        for account in report.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail["name"] == stream:
                    return detail["state"]["last_seq"]
        return None

    def wait_until_healthy(self, timeout: float = 30.0) -> None:
        """Every running node is current with a JetStream meta leader (its /healthz says ok)."""
        deadline = time.monotonic() + timeout
        running = [name for name, node in self.nodes.items() if node.process and node.process.poll() is None]
        while True:
            reports = {name: self._health(name) for name in running}
            if all(status == "ok" for status in reports.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the NATS cluster is not healthy: {reports}")
            time.sleep(0.1)

    def _health(self, name: str) -> str:
        try:
            report = self.monitor(name, "healthz")
        except OSError as error:
            return repr(error)
        return report.get("status", "") if not report.get("error") else report["error"]


@contextlib.contextmanager
def nats_cluster(with_users: bool = False) -> Iterator[NatsCluster]:
    """deploy/nats/cluster/node.conf (secured-node.conf `with_users`, with a fresh key per service)
    three times, as nats-1..3, on loopback ports for the client, route and monitoring listeners and
    with a store each, in place of the compose ones."""
    with tempfile.TemporaryDirectory(prefix="beacon-nats-cluster-") as folder:
        conf = Path(folder) / "conf"
        (conf / "cluster").mkdir(parents=True)
        # The store directory comes from the command line here, and nats-server refuses both.
        text = (DEPLOY_NATS / "cluster" / "node.conf").read_text()
        (conf / "cluster" / "node.conf").write_text(re.sub(r"^\s*store_dir:.*$", "", text, flags=re.MULTILINE))
        if with_users:
            write_service_keys(conf)
            shutil.copy(DEPLOY_NATS / "users.conf", conf)
            shutil.copy(DEPLOY_NATS / "cluster" / "secured-node.conf", conf / "cluster")
        config_file = conf / "cluster" / ("secured-node.conf" if with_users else "node.conf")
        names = ("nats-1", "nats-2", "nats-3")
        route_ports = {name: free_port() for name in names}
        routes = ",".join(f"nats-route://127.0.0.1:{port}" for port in route_ports.values())
        monitoring = {name: free_port() for name in names}
        nodes = {
            name: LocalNatsServer(
                Path(folder) / name,
                log_file=Path(folder) / f"{name}.log",
                config_file=config_file,
                arguments=[
                    "--cluster", f"nats-route://127.0.0.1:{route_ports[name]}", "--routes", routes,
                    "-m", str(monitoring[name]),
                ],
                environment={"SERVER_NAME": name},
            )
            for name in names
        }  # fmt: skip
        try:
            for node in nodes.values():
                node.start()
            cluster = NatsCluster(nodes, monitoring, conf if with_users else None)
            cluster.wait_until_healthy()
            yield cluster
        finally:
            for node in nodes.values():
                node.stop()


async def streams_exist(nats_url: str, *contexts: str, replicas: int = 1) -> None:
    """Declare the streams of services a test does not run, as they would at their start: a
    service's subscribers start once every stream it follows exists."""
    import nats

    from shared.bus import StreamSettings, context_stream, ensure_stream

    nc = await nats.connect(nats_url.split(","))
    try:
        for context in contexts:
            await ensure_stream(nc.jetstream(), context_stream(context, StreamSettings(replicas=replicas)))
    finally:
        await nc.close()


DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"


@dataclass(frozen=True)
class SecuredNats:
    """A nats-server enforcing deploy/nats/users.conf, with this run's keys and its log."""

    url: str
    keys: Path
    log_file: Path
    ca_file: Path | None = None  # with TLS: the CA that issued the server's certificate

    def seed_file(self, service: str) -> Path:
        return seed_file(self.keys, service)

    def violations(self) -> list[str]:
        return [line for line in self.log_file.read_text().splitlines() if "Violation" in line]


@contextlib.contextmanager
def nats_server_with_users() -> Iterator[SecuredNats]:
    """users.conf as it is, with a fresh key per service, and no TLS."""
    with tempfile.TemporaryDirectory(prefix="beacon-nats-") as folder:
        conf = Path(folder) / "conf"
        write_service_keys(conf)
        shutil.copy(DEPLOY_NATS / "users.conf", conf)
        log = Path(folder) / "nats.log"
        with LocalNatsServer(Path(folder) / "store", log_file=log, config_file=conf / "users.conf") as server:
            yield SecuredNats(server.url, conf, log)


@contextlib.contextmanager
def production_nats_server() -> Iterator[SecuredNats]:
    """production.conf with its TLS placeholders pointed at a throwaway CA's certificate, without
    its monitoring port, store and listening port (the command line gives those)."""
    with tempfile.TemporaryDirectory(prefix="beacon-nats-") as folder:
        conf, tls = Path(folder) / "conf", Path(folder) / "tls"
        write_service_keys(conf)
        shutil.copy(DEPLOY_NATS / "users.conf", conf)
        text = (DEPLOY_NATS / "production.conf").read_text().replace("/etc/nats/tls/", f"{tls}/")
        (conf / "production.conf").write_text(re.sub(r"^\s*(http_port|store_dir):.*$", "", text, flags=re.MULTILINE))
        write_certificates(tls, host="127.0.0.1")
        log = Path(folder) / "nats.log"
        with LocalNatsServer(Path(folder) / "store", log_file=log, config_file=conf / "production.conf") as server:
            yield SecuredNats(f"tls://{server.host}:{server.port}", conf, log, tls / "ca.pem")


def write_certificates(folder: Path, host: str) -> None:
    """ca.pem, and server-cert.pem with server-key.pem for `host` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def named(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(named(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate("Beacon test CA", ca_key, named("Beacon test CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        certificate("beacon-nats", server_key, ca.subject)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server-cert.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server-key.pem").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
