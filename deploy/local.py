"""`make run`: NATS and the four services as local processes with SQLite stores, a demo city.

Starts its own nats-server (JetStream, store under the data folder) unless told to use one with
--nats-url; where a default port is taken it picks a free one and says so. Ctrl-C stops all.
The token-signing key pair and the demo city's admin password are made once, in the data folder:
registry alone is given the private key, every service the public one.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deploy import demo_city
from shared.devkeys import load_or_make_key_pair
from shared.natsserver import LocalNatsServer, dying_with, free_port
from shared.settings import DEFAULT_PORTS

SERVICES = ("registry", "dispatch", "points", "reporting")


def _say(message: str) -> None:
    print(message, flush=True)


def _port(name: str, wanted: int | None, default: int) -> int:
    if wanted:
        return wanted  # asked for explicitly: use it, and fail loudly if it is taken
    port = free_port(default)
    if port != default:
        _say(f"  port {default} for {name} is taken; using {port}")
    return port


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalCity:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = Path(args.data).resolve()
        self.logs = self.data / "logs"
        self.nats: LocalNatsServer | None = None
        self.nats_url = args.nats_url
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self.admin_password: str | None = None

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None:
            port = _port("NATS", self.args.nats_port, 4222)
            self.nats = LocalNatsServer(
                self.data / "nats", port=port, log_file=self.logs / "nats.log", die_with_parent=True
            ).start()
            self.nats_url = self.nats.url
            _say(f"  nats-server (JetStream) on {self.nats_url}, store {self.data / 'nats'}")
        else:
            _say(f"  using the NATS server at {self.nats_url}")
        private_key, public_key = self.data / "token-signing.pem", self.data / "token-signing.pub.pem"
        load_or_make_key_pair(private_key, public_key, warn="make run's own pair; production gives registry its own")
        if not self.args.no_demo:
            self.admin_password = self._first_admin()
        ports = {}
        for offset, name in enumerate(SERVICES):
            wanted = self.args.base_port + offset if self.args.base_port else None
            ports[name] = _port(name, wanted, DEFAULT_PORTS[name])
            self.urls[name] = f"http://127.0.0.1:{ports[name]}"
        for name, port in ports.items():
            env = {
                **os.environ,
                "BEACON_NATS_URL": self.nats_url,
                "BEACON_HOST": "127.0.0.1",
                "BEACON_PORT": str(port),
                "BEACON_DATABASE_URL": f"sqlite:///{self.data / (name + '.db')}",
                "BEACON_JWT_PUBLIC_KEY_FILE": str(public_key),
                # Each service's pages call the others from the browser (dispatch's board and
                # phone pages: registry's sign-in, points' accounts).
                "BEACON_CORS_ORIGINS": ",".join(self.urls.values()),
                "BEACON_REGISTRY_URL": self.urls["registry"],
                "BEACON_POINTS_URL": self.urls["points"],
            }
            if name == "registry":  # the issuer: no other service holds the private key
                env["BEACON_JWT_PRIVATE_KEY_FILE"] = str(private_key)
            with open(self.logs / f"{name}.log", "ab") as log:  # the child writes to its own copy
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
                    # Killed outright, we run no clean-up: they go too, not on as orphans holding
                    # the ports and the stores.
                    preexec_fn=dying_with(os.getpid()),
                )

    def _first_admin(self) -> str:
        """The demo city's admin account, made once (before registry starts, straight into its
        store) with a development password kept in the data folder; the password."""
        path = self.data / "admin-password.txt"
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(12) + "\n")
        command = [
            sys.executable, "-m", "services.registry", "create-admin", "--username", demo_city.ADMIN_USERNAME,
            "--password-file", str(path), "--city", str(demo_city.CITY["code"]), "--if-missing",
        ]  # fmt: skip
        env = {**os.environ, "BEACON_DATABASE_URL": f"sqlite:///{self.data / 'registry.db'}"}
        made = subprocess.run(command, env=env, capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"the demo city's admin account could not be made: {made.stderr.strip()}")
        return path.read_text().splitlines()[0]

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(SERVICES)
        with httpx.Client(timeout=2) as client:
            while waiting:
                for name in sorted(waiting):
                    self._check_alive(name)
                    try:
                        if client.get(self.urls[name] + "/readyz").status_code == 200:
                            waiting.discard(name)
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(waiting))} (logs in {self.logs})")
                time.sleep(0.2)

    def write_whereabouts(self) -> None:
        """Where this run's parts answer, for `beacon status` and the other commands."""
        whereabouts = {"urls": self.urls, "nats_url": self.nats_url}
        (self.data / "city.json").write_text(json.dumps(whereabouts, indent=2) + "\n")

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            log = self.logs / f"{name}.log"
            raise RuntimeError(f"{name} exited with {process.returncode}; last lines of {log}:\n{_tail(log)}")

    def watch(self) -> None:
        while True:
            for name in SERVICES:
                self._check_alive(name)
            if self.nats and self.nats.process and self.nats.process.poll() is not None:
                raise RuntimeError(f"nats-server exited; see {self.logs / 'nats.log'}")
            time.sleep(0.5)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                _say(f"  {name} did not stop in time; killing it")
                process.kill()
                process.wait()
        if self.nats:
            self.nats.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--data", default="data", help="folder for the stores, NATS and logs (default ./data)")
    parser.add_argument("--nats-url", help="use this NATS server instead of starting one")
    parser.add_argument("--nats-port", type=int, help="port for the NATS server we start (default 4222, or a free one)")
    parser.add_argument("--base-port", type=int, help="first of four consecutive service ports (default 8101-8104, or free ones)")
    parser.add_argument("--no-demo", action="store_true", help="do not load the demo city")
    args = parser.parse_args(argv)

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    city = LocalCity(args)
    _say("Starting Beacon:")
    try:
        city.start()
        city.wait_ready()
        city.write_whereabouts()
        if not args.no_demo:
            assert city.admin_password is not None
            try:
                token: str | None = demo_city.sign_in(
                    city.urls["registry"], demo_city.ADMIN_USERNAME, city.admin_password
                )
            except RuntimeError as refusal:  # its password was changed since: load as before sign-in
                _say(f"  {refusal}; loading the demo city without a token")
                token = None
            created = demo_city.load(city.urls["registry"], token)
            _say(f"  demo city loaded: {created['org_units']} org units, {created['sites']} sites, {created['volunteers']} volunteers (new)")
            demo = demo_city.load_dispatch(city.urls["dispatch"], token)
            shop = demo_city.load_points(city.urls["points"], token=token)
        _say("Beacon is running:")
        for name in SERVICES:
            _say(f"  {name:<10} {city.urls[name]}  (API docs {city.urls[name]}/docs)")
        _say(f"  dashboard  {city.urls['reporting']}/dashboard  (figures: {city.urls['reporting']}/figures/370303)")
        _say(f"  sign in    {city.urls['dispatch']}/sign-in  (then the order board /board, a volunteer's /me)")
        if not args.no_demo:
            _say(
                f"  sign in    {demo_city.ADMIN_USERNAME} / {city.admin_password}  (the demo city's admin, "
                f"a development password: POST {city.urls['registry']}/auth/token)"
            )
            _say(f"  shift page {city.urls['dispatch']}/shifts/{demo['shift_id']}/display  (its QR code opens the check-in page)")
            _say(f"  shop       {city.urls['points']}/sites/{shop}/items")
        _say(f"  NATS       {city.nats_url}")
        _say(f"  logs       {city.logs}")
        _say("Press Ctrl-C to stop.")
        city.watch()
    except KeyboardInterrupt:
        _say("\nStopping Beacon…")
        return 0
    except Exception as error:
        _say(f"Beacon failed: {error}")
        return 1
    finally:
        city.stop()
        _say("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
