"""Refusals of every service said in the caller's language through the HTTP API (shared/i18n.py):
Chinese for `Accept-Language: zh-CN`, English, unchanged, without the header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.dispatch.app import create_app as dispatch_app
from services.points.app import create_app as points_app
from services.reporting.app import create_app as reporting_app
from shared.bus import StreamSettings, context_stream, ensure_stream
from shared.settings import ServiceSettings
from tests.infra.city import DISTRICT, registry_with_tree, running
from tests.infra.waiting import eventually

ZH = {"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"}


async def said(client: httpx.AsyncClient, method: str, url: str, **request: Any) -> tuple[int, str, str]:
    """The status and the detail, in Chinese and in English (the same request, twice)."""
    chinese = await client.request(method, url, headers=ZH, **request)
    english = await client.request(method, url, **request)
    assert chinese.status_code == english.status_code, (chinese.text, english.text)
    assert chinese.headers["content-type"].startswith("application/problem+json"), chinese.text
    return chinese.status_code, chinese.json()["detail"], english.json()["detail"]


async def test_registrys_refusals_are_said_in_chinese(nats_url: str, database_url: str) -> None:
    async with registry_with_tree(nats_url, database_url) as registry:
        assert await said(registry, "GET", "/org-units/370399") == (404, "未知的组织 370399", "unknown org unit 370399")
        assert await said(registry, "GET", "/sites/ST-NOWHERE") == (
            404,
            "未知的站点 ST-NOWHERE",
            "unknown site ST-NOWHERE",
        )
        unit = {"code": "370300", "level": "city", "name": "淄博市", "population": 1, "party_members": 0}
        assert await said(registry, "POST", "/org-units", json=unit) == (
            409, "组织 370300 已存在", "org unit 370300 already exists",
        )  # fmt: skip
        crowded = {**unit, "code": "370311", "level": "district", "parent_code": "370300", "party_members": 2}
        status, chinese, english = await said(registry, "POST", "/org-units", json=crowded)
        assert (status, chinese, english) == (
            422,
            "党员人数不能多于人口数",
            "party members cannot outnumber the population",
        )


async def test_points_refusals_are_said_in_chinese(nats_url: str, tmp_path: Path) -> None:
    app = points_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'points.db'}"))
    async with running(app, "points") as points:
        assert await said(points, "GET", "/redemptions/RD00000009") == (
            404, "未知的兑换单 RD00000009", "unknown redemption RD00000009",
        )  # fmt: skip
        falling = {"hours": ["10", "5", "20", "30", "40"]}
        assert await said(points, "PUT", "/star-thresholds", json=falling) == (
            422, "值无效：每个星级所需时长都应多于下一级", "Value error, each star needs more hours than the one below it",
        )  # fmt: skip


async def test_dispatchs_refusals_are_said_in_chinese(nats_url: str, tmp_path: Path) -> None:
    app = dispatch_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'dispatch.db'}"))
    async with running(app, "dispatch") as dispatch:
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        rule = {"bands": [{"below_minutes": 60, "hours": "1"}], "effective_from": past}
        assert await said(dispatch, "PUT", f"/districts/{DISTRICT}/rounding-rule", json=rule) == (
            422, "时长取整规则只能从现在或以后生效，不能追溯", "a rounding rule takes effect now or later, never in the past",
        )  # fmt: skip


async def test_reportings_refusals_are_said_in_chinese(nats_url: str, js, tmp_path: Path) -> None:
    for context in ("registry", "dispatch", "points"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    app = reporting_app(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'reporting.db'}"))
    async with running(app, "reporting") as reporting:
        await eventually(lambda: reporting.get("/readyz"), lambda r: r.status_code == 200)
        assert await said(reporting, "GET", "/figures/370303") == (404, "未知的组织 370303", "unknown org unit 370303")
