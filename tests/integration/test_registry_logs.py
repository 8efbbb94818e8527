"""Registry's logs show no ID number or mobile in clear: the access log of a request that carries
them (a lookup by ID number, a search, a refused registration), served as `python -m
services.registry` serves it (JSON lines), and the error log of a request that fails with them in
the error."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.registry.app import RegistrySettings, create_app
from services.registry.handlers import volunteers as volunteer_handlers
from shared.natsserver import free_port
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN
from tests.infra.city import COMMUNITY, STAFF, TREE
from tests.infra.nats import streams_exist

ROOT = Path(__file__).resolve().parents[2]
ID, PHONE = resident_id("37030319900101123"), "13912340001"
ID_MASKED, PHONE_MASKED = "3703**********" + ID[-4:], "139****0001"
VOLUNTEER = {"name": "王小明", "id_number": ID, "phone": PHONE, "community_code": COMMUNITY, "consent": True}


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within 60 s")


def test_the_served_registry_logs_requests_with_id_numbers_and_mobiles_masked(nats_url: str, tmp_path: Path) -> None:
    asyncio.run(streams_exist(nats_url, "dispatch"))  # registry is ready once the stream it follows exists
    port = free_port()
    keys = {"BEACON_PERSONAL_DATA_KEY": TEST_PERSONAL_DATA_KEY, "BEACON_ID_INDEX_KEY": TEST_ID_INDEX_KEY}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "services.registry", "--port", str(port),
            "--database-url", f"sqlite:///{tmp_path / 'registry.db'}", "--nats-url", nats_url,
        ],
        cwd=ROOT,
        env={**os.environ, **keys},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        with httpx.Client(base_url=url, timeout=10, headers=ADMIN) as client:
            assert client.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}).is_success
            assert client.post("/volunteers", json=VOLUNTEER, headers=STAFF).status_code == 201
            assert client.get(f"/volunteers/{ID}", headers=STAFF).status_code == 404  # looked up by the wrong number
            assert client.get("/volunteers", params={"after": PHONE}, headers=STAFF).status_code == 200
            refused = client.post("/volunteers", json={**VOLUNTEER, "phone": "1391234000"}, headers=STAFF)
            assert refused.status_code == 422 and ID not in refused.text
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    records = [json.loads(line) for line in output.splitlines()]  # every line one JSON object
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any(f'"GET /volunteers/{ID_MASKED} HTTP/1.1" 404' in line for line in access), output
    assert any(f'"GET /volunteers?after={PHONE_MASKED} HTTP/1.1" 200' in line for line in access), output
    assert ID not in output and PHONE not in output


async def test_a_request_that_fails_with_an_id_number_in_the_error_logs_it_masked(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*_: Any, id_number: str, phone: str, **__: Any) -> str:
        raise RuntimeError(f"could not register {id_number} ({phone})")  # a bug that says too much

    monkeypatch.setattr(volunteer_handlers, "register", failing)
    app = create_app(
        RegistrySettings(
            nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'registry.db'}",
            personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
        )
    )  # fmt: skip
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # No logging configuration of uvicorn's own: its records reach the test's handlers.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        with caplog.at_level("INFO"):
            while not server.started:
                assert not serving.done()
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as client:
                assert (await client.post("/volunteers", json=VOLUNTEER, headers=STAFF)).status_code == 500
    finally:
        server.should_exit = True
        await serving
        sock.close()
    assert "Exception in ASGI application" in caplog.text
    assert f"could not register {ID_MASKED} ({PHONE_MASKED})" in caplog.text
    assert ID not in caplog.text and PHONE not in caplog.text
