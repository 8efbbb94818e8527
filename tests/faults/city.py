"""Beacon as `make run` runs it, for fault tests: a nats-server and the four services as separate
processes (SQLite stores in a folder of the test's), each of which a test may SIGKILL and start
again on the same port, store and data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deploy.local import SERVICES
from shared.natsserver import LocalNatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.env = env
        self.url = f"http://127.0.0.1:{env['BEACON_PORT']}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, whatever was in flight is cut off."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def ready(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ProcessCity:
    """NATS and the services, started, killed and restarted by the test."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.logs = data / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nats = LocalNatsServer(data / "nats", port=free_port(), log_file=self.logs / "nats.log")
        self.services: dict[str, ServiceProcess] = {}
        for name in SERVICES:
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "BEACON_NATS_URL": self.nats.url,
                "BEACON_HOST": "127.0.0.1",
                "BEACON_PORT": str(free_port()),
                "BEACON_DATABASE_URL": f"sqlite:///{self.database(name)}",
                "BEACON_LOG_LEVEL": "WARNING",
                "BEACON_LOG_FORMAT": "text",
            }
            if name != "registry":  # the issuer alone holds the private key (tests/conftest.py set it)
                env.pop("BEACON_JWT_PRIVATE_KEY_FILE", None)
            self.services[name] = ServiceProcess(name, env, self.logs / f"{name}.log")

    def database(self, name: str) -> Path:
        return self.data / f"{name}.db"

    def url(self, name: str) -> str:
        return self.services[name].url

    def start(self) -> None:
        self.nats.start()
        for service in self.services.values():
            service.start()
        self.wait_ready()

    def wait_ready(self, names: tuple[str, ...] = SERVICES, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(names)
        with httpx.Client() as client:
            while waiting:
                for name in sorted(waiting):
                    service = self.services[name]
                    if not service.alive():
                        raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{service.tail()}")  # type: ignore[union-attr]
                    if service.ready(client):
                        waiting.discard(name)
                if waiting and time.monotonic() > deadline:
                    tails = "\n".join(f"--- {n}:\n{self.services[n].tail()}" for n in sorted(waiting))
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {sorted(waiting)}\n{tails}")
                time.sleep(0.2)

    def restart_nats(self, down_seconds: float = 0.0) -> None:
        """SIGKILL nats-server and start it again on the same port and store."""
        self.nats.kill()
        time.sleep(down_seconds)
        self.nats.start()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        self.nats.stop()
