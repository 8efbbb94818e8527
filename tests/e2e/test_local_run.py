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


def test_local_run_serves_the_demo_city_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.local", "--data", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
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
