"""The `beacon` command against the four services served for real (tests/infra/served.py) and a
real NATS: status, importing volunteers, the dead letters, replaying the figures, the demo city."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from deploy import cli
from shared.auth import Role
from tests.infra.auth import CITY, token_for
from tests.infra.nats import nats_server
from tests.infra.scope import TREE
from tests.infra.served import ServedCity, served_city

pytestmark = pytest.mark.nats
TOKEN = token_for(Role.city_admin, CITY, account="test-admin")
runner = CliRunner()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedCity, str]]:
    with nats_server() as nats_url, served_city(nats_url, tmp_path_factory.mktemp("cli")) as served:
        yield served, nats_url


@pytest.fixture
def beacon(city: tuple[ServedCity, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Runs `beacon ...` pointed at the served city; its output."""
    served, nats_url = city
    for name, url in served.urls.items():
        monkeypatch.setenv(f"BEACON_{name.upper()}_URL", url)
    monkeypatch.setenv("BEACON_NATS_URL", nats_url)
    monkeypatch.setenv("BEACON_TOKEN", TOKEN)
    monkeypatch.setenv("COLUMNS", "250")  # whole table rows, not wrapped

    def run(*arguments: str, exit_code: int = 0) -> str:
        result = runner.invoke(
            cli.app, [*arguments] if arguments[0] == "run" else [*arguments, "--data", str(tmp_path)]
        )
        assert result.exit_code == exit_code, result.output + repr(result.exception)
        return result.output

    return run


def test_status_shows_every_service_ready_with_its_stream_and_consumers(beacon) -> None:  # type: ignore[no-untyped-def]
    output = beacon("status")
    for service in ("registry", "dispatch", "points", "reporting"):
        assert any(
            line.split("│")[1].strip() == service and "ready" in line for line in output.splitlines() if "│" in line
        )
    for stream in ("REGISTRY", "DISPATCH", "POINTS", "DEADLETTER"):
        assert stream in output
    assert "points" in output.split("consumers")[1]  # points' consumers of registry and dispatch
    assert "dead letters: 0" in output


def test_importing_volunteers_reports_each_row_and_a_second_import_adds_nothing(beacon, city, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import resident_id

    served, _ = city
    import httpx

    httpx.post(f"{served.urls['registry']}/org-units/import", content=TREE, timeout=30,
               headers={"content-type": "text/csv", "Authorization": f"Bearer {TOKEN}"}).raise_for_status()  # fmt: skip
    rows = [
        f"张三,{resident_id('37030319800101001')},13800000001,370303001001,是",
        f"李四,{resident_id('37030319800101002')},13800000002,370303001001,是",
        "王五,not-an-id,13800000003,370303001001,是",
    ]
    csv = tmp_path / "volunteers.csv"
    csv.write_text("姓名,身份证号,手机号,所属社区代码,同意授权\n" + "\n".join(rows) + "\n", encoding="utf-8")
    first = beacon("import", "volunteers", str(csv))
    assert "rows 3: imported 2, skipped 0, refused 1" in first
    assert "line 4:" in first  # the refused row, counting the header as line 1
    assert "rows 3: imported 0, skipped 2, refused 1" in beacon("import", "volunteers", str(csv))


def test_a_refused_event_is_listed_with_its_consumer_and_reason(beacon, city) -> None:  # type: ignore[no-untyped-def]
    _, nats_url = city

    async def publish_garbage() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().publish("dispatch.370303.service_record.broken", b"{not an envelope")
        await nc.close()

    asyncio.run(publish_garbage())
    deadline = time.monotonic() + 30
    while "points" not in (listed := beacon("dlq", "list")).split("dead letters")[1] and time.monotonic() < deadline:
        time.sleep(0.3)
    rows = [line for line in listed.splitlines() if "deadletter." in line]
    points_row = next(row for row in rows if row.split("│")[2].strip() == "points-ledger")
    assert "DISPATCH #1" in points_row
    assert "malformed envelope" in points_row  # the reason, as the consumer gave it
    # Every consumer of dispatch's records refused it: each one's letter is listed, and counted.
    assert f"dead letters: {len(rows)}" in beacon("status")
    assert f"dead letters ({len(rows) - 1})" not in listed
    only_points = beacon("dlq", "list", "--consumer", points_row.split("│")[2].strip())
    assert "dead letters (1)" in only_points
    assert "dead letters (0)" in beacon("dlq", "list", "--consumer", "nobody")

    # Sent back, a reactor refuses it again (it is still malformed): a new letter, the first one
    # marked as sent back; a stream follower's letter is not sent back at all.
    reactor_row = next(row for row in rows if row.split("│")[2].strip() == "dispatch-records")
    sequence = reactor_row.split("│")[1].strip()
    assert f"#{sequence}: sent back to dispatch-records" in beacon("dlq", "retry", sequence)
    deadline = time.monotonic() + 30
    while "dead letters (2)" not in (mine := beacon("dlq", "list", "--consumer", "dispatch-records")):
        assert time.monotonic() < deadline, mine
        time.sleep(0.3)
    first, second = [line for line in mine.splitlines() if "deadletter." in line]
    assert first.split("│")[6].strip() == "yes" and second.split("│")[6].strip() == ""
    assert "DISPATCH #1" in second  # where the event first came from, not the retry stream
    assert "takes no retries" in beacon("dlq", "retry", points_row.split("│")[1].strip())  # the ledger follows its stream


def test_replaying_the_figures_rebuilds_them_to_a_new_generation(beacon) -> None:  # type: ignore[no-untyped-def]
    output = beacon("replay", "figures")
    assert "figures rebuilt into generation" in output
    assert "unknown" not in output
    assert "reporting has one projection" in beacon("replay", "volunteers", exit_code=2)


def test_a_refused_sign_in_stops_with_the_reason(beacon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BEACON_TOKEN", "not-a-token")
    output = beacon("replay", "figures", exit_code=1)
    assert "401" in output


def test_run_starts_the_local_city_with_the_options_given(beacon, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from deploy import local

    seen: list[list[str]] = []
    monkeypatch.setattr(local, "main", lambda argv: seen.append(argv) or 0)
    beacon("run", "--data", "elsewhere", "--base-port", "9100", "--no-demo")
    assert seen == [["--data", "elsewhere", "--base-port", "9100", "--no-demo"]]
