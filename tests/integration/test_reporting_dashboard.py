"""The dashboard in headless Chromium (Debian's `chromium`), served by a running reporting service
over a real NATS: it shows the city's figures, drills down, switches to English, and a
screenshot is taken."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.reporting.app import create_app
from shared.auth import Role
from shared.bus import StreamSettings, context_stream, ensure_stream
from shared.catalog import catalog
from shared.settings import ServiceSettings
from tests.infra.auth import ADMIN, bearer, token_for
from tests.infra.city_events import a_city
from tests.infra.waiting import eventually

INSTALL_HINT = "chromium is not on PATH: install Debian's chromium package (as root: deploy/ensure-chromium.sh)"


def chromium() -> str:
    """Fails (never skips) the calling test when the browser is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(INSTALL_HINT)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def dashboard(nats_url: str, js, tmp_path: Path) -> AsyncIterator[str]:
    """A reporting service on a real port, its figures filled from the city's events."""
    for context in ("registry", "dispatch", "points"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    for context, events in a_city().by_context.items():
        for envelope, _ in events:
            await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream=context.upper())
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'reporting.db'}"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        while not server.started:  # the app's start (store, NATS, projector) comes first
            assert not serving.done(), "the reporting service did not start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=base, headers=ADMIN) as client:
            await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200, timeout=30)
            await eventually(
                lambda: client.get("/figures/370303001001"),
                lambda r: r.status_code == 200 and r.json()["figures"].get("points.redeemed") == 10,
            )
        yield base
    finally:
        server.should_exit = True
        await serving


async def browse(url: str, *extra: str) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--virtual-time-budget=10000", "--window-size=1280,1200", *extra, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_dashboard_shows_the_city_drills_down_switches_language_and_is_screenshot(dashboard: str, tmp_path: Path) -> None:
    signed_in = "#token=" + ADMIN["Authorization"].removeprefix("Bearer ")
    page = await browse(f"{dashboard}/dashboard{signed_in}", "--dump-dom")
    assert 'data-shown="370300"' in page  # the city, found by the page itself
    assert "淄博市" in page and "注册志愿者" in page and "张店区" in page  # headline and the district's bar
    assert '<div class="card" data-figure="hours"><div class="value">1.5</div>' in page  # the city's service hours

    community = await browse(f"{dashboard}/dashboard?code=370303001001&lang=en{signed_in}", "--dump-dom")
    assert 'data-shown="370303001001"' in community and "和平社区" in community
    assert "Registered volunteers" in community and "Party-member targets" in community and "Up one level" in community
    assert 'id="falling-short">1<' in community

    shot = tmp_path / "dashboard.png"
    await browse(f"{dashboard}/dashboard{signed_in}", f"--screenshot={shot}")
    image = shot.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000


async def test_a_district_admins_dashboard_starts_at_their_district_and_goes_no_higher(dashboard: str) -> None:
    page = await browse(f"{dashboard}/dashboard#token={token_for(Role.district_admin, '370303')}", "--dump-dom")
    assert 'data-shown="370303"' in page and "张店区" in page  # their own node, read off the token
    assert 'id="up"' not in page  # the city above is out of their reach
    async with httpx.AsyncClient(base_url=dashboard, headers=bearer(Role.district_admin, "370303")) as client:
        assert (await client.get("/figures/370300")).status_code == 404
        assert (await client.get("/figures/370303001001")).status_code == 200
