"""The partner example (examples/partner_stars/follow_stars.py) against points running for real
over NATS: it sees the star awards of its district only, and after a restart it goes on from its
cursor without repeating any."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from services.points.app import create_app
from shared.bus import StreamSettings, context_stream, dead_letter_stream, ensure_stream, stream_name
from shared.catalog import catalog
from shared.envelope import EventEnvelope
from shared.events.points import StarLevelAwarded
from shared.settings import ServiceSettings
from tests.factories import PATH, registered
from tests.infra.auth import ADMIN
from tests.infra.points import DispatchRecords
from tests.infra.waiting import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partner_stars" / "follow_stars.py"
OURS = PATH  # district 370303
OTHER = ("370305", "370305001000", "370305001001")
# A volunteer reaches one star at 100 confirmed hours (points' default thresholds).
ONE_STAR = Decimal(100)


@pytest.fixture
async def points(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for context in ("registry", "dispatch"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'points.db'}"))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://points", headers=ADMIN)
        )
        await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200)
        yield client, js
    await nc.close()


async def publish(js: Any, envelope: EventEnvelope) -> None:
    subject = catalog.subject_of(envelope)
    stream = stream_name(subject.split(".")[0])
    await js.publish(subject, envelope.to_json(), headers={"Nats-Msg-Id": str(envelope.event_id)}, stream=stream)


async def award_a_star(client: httpx.AsyncClient, js: Any, n: int, path: tuple[str, ...]) -> str:
    """Register volunteer `n` in `path`'s community (so their account is that district's) and
    confirm enough hours for a star: points awards it."""
    event = registered(n).model_copy(update={"community_code": path[-1]})
    await publish(
        js,
        catalog.envelope(event, aggregate_id=event.volunteer_number, aggregate_version=1, org_path=path, actor="staff"),
    )
    number = event.volunteer_number
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.status_code == 200)
    records = DispatchRecords(district=path[0])
    records.count = n * 10  # record ids of their own
    envelope, _ = records.confirm(number, ONE_STAR, event.consented_at)
    await publish(js, envelope)
    await eventually(lambda: client.get(f"/accounts/{number}"), lambda r: r.json()["star_level"] == 1)
    return number


class Partner:
    """The example, run as a partner would run it: its own process, reading its stdout."""

    def __init__(self, nats_url: str, folder: Path) -> None:
        self.args = [
            sys.executable, str(EXAMPLE), "--nats-url", nats_url, "--district", OURS[0],
            "--seen", str(folder / "seen.txt"),
        ]  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(EXAMPLE.parent)
        )
        return await self.line()

    async def line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)  # a bound, not a measure
        if not line:
            raise AssertionError(f"the example ended: {(await self.process.stderr.read()).decode()}")  # type: ignore[union-attr]
        return line.decode().strip()

    async def award(self) -> dict[str, Any]:
        line = await self.line()
        assert line.startswith("award "), line
        return json.loads(line.removeprefix("award "))

    async def stop(self) -> list[str]:
        """Stopped as an operator would (SIGTERM); what it printed meanwhile."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(self.process.communicate(), 30)
        assert self.process.returncode == 0, err.decode()
        return [line for line in out.decode().splitlines() if line]


async def test_the_partner_example_follows_its_district_from_its_cursor(points, nats_url: str, tmp_path: Path) -> None:
    client, js = points
    partner = Partner(nats_url, tmp_path)
    assert await partner.start() == "following points.370303.account.star_level_awarded as partner-stars-370303"

    # Another district's award first: had the example seen it, it would have printed it before ours.
    await award_a_star(client, js, 2, OTHER)
    ours = await award_a_star(client, js, 1, OURS)
    first = await partner.award()
    assert (first["volunteer"], first["district"], first["stars"], first["previous"]) == (ours, OURS[0], 1, 0)
    assert await partner.stop() == []  # nothing else: not the other district's

    # While it is stopped: an award as points published it before v2, one more here, one there.
    await publish_raw(js, an_award_of_version_1("V00000009", stars=2))
    await award_a_star(client, js, 4, OTHER)
    later = await award_a_star(client, js, 3, OURS)
    assert await partner.start() == "following points.370303.account.star_level_awarded as partner-stars-370303"
    old, resumed = await partner.award(), await partner.award()
    assert (old["volunteer"], old["stars"], old["previous"]) == ("V00000009", 2, 1)
    assert (resumed["volunteer"], resumed["district"]) == (later, OURS[0])  # not the first award again
    assert await partner.stop() == []
    assert (tmp_path / "seen.txt").read_text().split() == [first["event_id"], old["event_id"], resumed["event_id"]]


def an_award_of_version_1(number: str, stars: int) -> EventEnvelope:
    current = catalog.envelope(
        StarLevelAwarded(volunteer_number=number, star_level=stars, previous_star_level=stars - 1, total_hours=Decimal(300)),
        aggregate_id=number, aggregate_version=5, org_path=OURS, actor="system:points",
    )  # fmt: skip
    payload = {"volunteer_number": number, "level": stars, "previous_level": stars - 1, "total_hours": "300"}
    return current.model_copy(update={"schema_version": 1, "payload": payload})


async def publish_raw(js: Any, envelope: EventEnvelope) -> None:
    """Straight to the stream, as points' relay did (the catalog no longer makes v1 envelopes)."""
    subject = f"points.{envelope.district_code}.account.star_level_awarded"
    await js.publish(subject, envelope.to_json(), headers={"Nats-Msg-Id": str(envelope.event_id)}, stream="POINTS")
