"""Reporting's HTTP API over a real NATS (SQLite): figures as they arrive, periods, the party
members' targets and the order times, and every table as CSV and Excel."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from services.reporting.app import create_app
from shared.bus import StreamSettings, context_stream, ensure_stream
from shared.catalog import catalog
from shared.settings import ServiceSettings
from tests.infra.city import running
from tests.infra.city_events import DISTRICT, HEPING, a_city
from tests.infra.waiting import eventually


@pytest.fixture
async def reporting(nats_url: str, js, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    for context in ("registry", "dispatch", "points"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'reporting.db'}"))
    async with running(app, "reporting") as client:
        await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200)
        yield client, js


async def publish_city(js) -> None:
    for context, events in a_city().by_context.items():
        for envelope, _ in events:
            await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream=context.upper())


async def test_figures_follow_the_streams_by_period_and_download_as_csv_and_excel(reporting) -> None:
    client, js = reporting
    await publish_city(js)
    shown = await eventually(
        lambda: client.get(f"/figures/{HEPING}"), lambda r: r.status_code == 200 and r.json()["figures"].get("points.redeemed") == 10
    )
    assert shown.json()["figures"]["volunteers.registered"] == 1
    november = (await client.get(f"/figures/{HEPING}", params={"period": "2026-11"})).json()
    assert (november["as_of"], november["period"]["from"], november["figures"]["service.hours"]) == ("2026-11-30", "2026-11-01", 2.0)

    download = await client.get(f"/figures/{HEPING}", params={"period": "2026-12", "format": "csv"})
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == f'attachment; filename="figures-{HEPING}.csv"'
    rows = {row["figure"]: row for row in csv.DictReader(io.StringIO(download.content.decode("utf-8-sig")))}
    assert (rows["points.redeemed"]["as_of"], rows["points.redeemed"]["in_period"]) == ("10", "10")
    assert (rows["volunteers.registered"]["as_of"], rows["volunteers.registered"]["in_period"]) == ("1", "-1")

    workbook = await client.get(f"/figures/{DISTRICT}/party-members", params={"year": 2026, "format": "xlsx"})
    sheet = load_workbook(io.BytesIO(workbook.content)).active
    assert [list(row) for row in sheet.iter_rows(values_only=True)] == [
        ["volunteer_number", "reported_in", "hours"], ["V00000001", True, 1.5],
    ]
    orders = (await client.get(f"/figures/{DISTRICT}/orders", params={"from": "2026-11-01", "to": "2026-11-30"})).json()
    assert (orders["placed"], orders["time_to_accept"]["count"]) == (1, 1)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"period": "2026-13"}, "period"), ({"period": "2026", "from": "2026-01-01"}, "period"),
     ({"from": "2026-02-01", "to": "2026-01-01"}, "to"), ({"format": "pdf"}, "format")],
)  # fmt: skip
async def test_a_bad_period_or_format_is_422_naming_the_field(reporting, params: dict[str, str], field: str) -> None:
    client, js = reporting
    await publish_city(js)
    await eventually(lambda: client.get(f"/figures/{HEPING}"), lambda r: r.status_code == 200)
    refused = await client.get(f"/figures/{HEPING}", params=params)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field


async def test_an_unknown_org_unit_is_404(reporting) -> None:
    client, _ = reporting
    for path in ("/figures/999999", "/figures/999999/party-members", "/figures/999999/orders"):
        assert (await client.get(path)).status_code == 404
