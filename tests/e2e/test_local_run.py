"""`make run` as a user runs it: real processes, a demo city, the URLs, a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.natsserver import port_is_free


def _make_run(data: Path, *options: str) -> subprocess.Popen[str]:
    """`make run`'s launcher, its output to read line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.local", "--data", str(data), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_local_run_serves_the_demo_city_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process = _make_run(tmp_path / "data")
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "Press Ctrl-C to stop." in line:
                break
        output = "\n".join(lines)
        assert "Press Ctrl-C to stop." in output, output
        urls = dict(re.findall(r"^\s+(registry|dispatch|points|reporting)\s+(http://\S+)", output, re.M))
        assert set(urls) == {"registry", "dispatch", "points", "reporting"}
        nats_url = re.search(r"NATS\s+(nats://\S+)", output).group(1)
        if "port 4222 for NATS is taken" in output:  # this machine's own NATS: never used
            assert not nats_url.endswith(":4222")

        username, password = re.search(r"sign in\s+(\S+) / (\S+)", output).groups()
        with httpx.Client(timeout=5) as client:
            for url in urls.values():
                assert client.get(url + "/readyz").status_code == 200
            # The demo city's admin signs in as printed; figures are for signed-in staff only.
            assert client.get(urls["reporting"] + "/figures/370303").status_code == 401
            signed_in = client.post(urls["registry"] + "/auth/token", data={"username": username, "password": password})
            client.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
            figures = {}
            for _ in range(100):
                figures = client.get(urls["reporting"] + "/figures/370303").json()["figures"]
                if figures.get("points.accounts_opened") == figures.get("volunteers.registered", -1):
                    break
                time.sleep(0.1)
            assert figures["volunteers.registered"] > 0
            assert figures["sites.level.station"] > 0
            assert figures["points.accounts_opened"] == figures["volunteers.registered"]

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "Stopped." in rest
        ports = [int(u.rsplit(":", 1)[1]) for u in urls.values()] + [int(nats_url.rsplit(":", 1)[1])]
        assert all(port_is_free(p) for p in ports), "a process outlived Ctrl-C"
    finally:
        if process.poll() is None:
            # Ctrl-C first: killing the launcher outright would leave its services running.
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_local_run_killed_outright_takes_its_services_and_nats_with_it(tmp_path: Path) -> None:
    """SIGKILL runs none of the launcher's clean-up: its children must not live on as orphans
    holding the ports and the stores (the next `make run` would find them taken)."""
    process = _make_run(tmp_path / "data", "--no-demo")
    children: list[int] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line or "Press Ctrl-C to stop." in line:
                break
        children = _children(process.pid)
        assert len(children) == 5  # nats-server and the four services
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while any(map(_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes its output pipe
        for pid in children:  # what outlived it on the old code
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
