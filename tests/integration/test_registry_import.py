"""Bulk import of volunteers from a provincial CSV export, over a real store (SQLite and
PostgreSQL): the report of bad rows, a second run that imports nothing twice, GB18030, a batch
that fails in the database, the HTTP endpoint (with NATS) and the command line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import httpx
import nats
import pytest
from sqlalchemy import func, select, text

from services.registry import importer, store
from services.registry.app import RegistrySettings, create_app
from services.registry.domain.org import TreeRow
from services.registry.handlers import Registry
from services.registry.handlers import volunteers as handlers
from services.registry.handlers.org import load_tree
from services.registry.importer import ImportReport, import_volunteers
from services.registry.vault import Vault, VaultKeys
from shared.db import make_engine
from shared.errors import Invalid
from shared.events.common import OrgLevel
from shared.eventstore import EventStore
from shared.web import Actor
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN, staff
from tests.infra.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 1, 15)
STAFF = Actor("staff-7", frozenset({"street_staff"}))
TREE = [
    TreeRow(1, "370300", None, OrgLevel.city, "淄博市", 4_700_000, 300_000),
    TreeRow(2, "370303", "370300", OrgLevel.district, "张店区", 1_000_000, 60_000),
    TreeRow(3, "370303001000", "370303", OrgLevel.street, "车站街道", 80_000, 5_000),
    TreeRow(4, "370303001001", "370303001000", OrgLevel.community, "和平社区", 8_000, 500),
    TreeRow(5, "370303001002", "370303001000", OrgLevel.community, "新华社区", 9_000, 600),
]

GOOD_1 = resident_id("37030319850612002")
GOOD_2 = resident_id("37030319920301004")
GOOD_3 = resident_id("37030320010817005")
GOOD_4 = resident_id("37030319700101006")
GOOD_5 = resident_id("37030319881111007")
GOOD_6 = resident_id("37030319950505008")
WRONG_CHECK = GOOD_1[:17] + ("0" if GOOD_1[17] != "0" else "1")
FUTURE_BIRTH = resident_id("37030320300101003")

# What a provincial platform exports: Chinese headers, columns we do not need, Chinese values.
EXPORT = f"""序号,姓名,性别,身份证号,手机号,所属社区代码,政治面貌,技能,同意授权
1,王小明,男,{GOOD_1},13912340001,370303001001,中共党员,急救；助老,是
2,李华,女,{WRONG_CHECK},13912340002,370303001001,群众,,是
3,张伟,男,{FUTURE_BIRTH},13912340003,370303001001,群众,,是
4,刘洋,男,{GOOD_2},13912340004,370303009999,群众,,是
5,陈静,女,{GOOD_3},1391234,370303001001,群众,,是
6,杨帆,男,{GOOD_4},13912340006,370303001001,群众,,否
7,赵磊,男,{GOOD_1},13912340007,370303001002,共青团员,,是
8,周敏,女,{GOOD_5},13912340008,370303001002,公职人员,"交通引导,文艺",是
9,吴刚,男,{GOOD_6},13912340009,370303001001,群众,摄影,是
"""
EXPECTED_PROBLEMS = [
    (3, "refused", "id_number", "the check character does not match (GB 11643 MOD 11-2)"),
    (4, "refused", "id_number", "the birth date in the ID number is in the future"),
    (5, "refused", "community_code", "unknown community 370303009999"),
    (6, "refused", "phone", "a mainland mobile number is 11 digits starting 13-19"),
    (7, "refused", "consent", "registration needs the volunteer's consent to the use of their data"),
    (8, "skipped", "id_number", "already registered as V00000001"),
    (10, "refused", "skills", "unknown skill '摄影' (known: 急救, 交通引导, 助老, 支教, 辅导, 法律, 文艺; or English like first_aid)"),
]


def problems(report: ImportReport) -> list[tuple[int, str, str | None, str]]:
    return [(p.line, p.outcome, p.field, p.reason) for p in report.problems]


def chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    """Small chunks, so that characters and rows are cut at chunk edges."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Registry]:
    keys = VaultKeys.from_settings(TEST_PERSONAL_DATA_KEY, TEST_ID_INDEX_KEY)
    registry = Registry(EventStore(make_engine(database_url), store.schema), Vault(keys))
    await registry.events.create_tables()
    await load_tree(registry, STAFF, TREE)
    yield registry
    await registry.events.engine.dispose()


async def scalar(registry: Registry, statement) -> object:
    async with registry.events.engine.connect() as conn:
        return await conn.scalar(statement)


async def volunteer_events(registry: Registry) -> int:
    events = registry.events.schema.events
    return await scalar(registry, select(func.count()).select_from(events).where(events.c.aggregate_type == "volunteer"))


async def imported_rows(registry: Registry) -> dict[str, tuple[str, str, list[str]]]:
    v, s = store.volunteers, store.volunteer_skills
    async with registry.events.engine.connect() as conn:
        rows = (await conn.execute(select(v.c.volunteer_number, v.c.community_code, v.c.political_status))).all()
        skills = (await conn.execute(select(s.c.volunteer_number, s.c.skill).order_by(s.c.skill))).all()
    return {
        number: (community, status, [skill for n, skill in skills if n == number]) for number, community, status in rows
    }


async def test_good_rows_are_imported_and_bad_rows_reported_by_line_and_reason(registry: Registry) -> None:
    report = await import_volunteers(registry, STAFF, chunks(EXPORT.encode("utf-8-sig")), today=TODAY)

    assert (report.rows, report.imported, report.skipped, report.refused) == (9, 2, 1, 6)
    assert report.encoding == "utf-8" and report.stopped is None
    assert problems(report) == EXPECTED_PROBLEMS
    assert await imported_rows(registry) == {
        "V00000001": ("370303001001", "party_member", ["elder_care", "first_aid"]),
        "V00000002": ("370303001002", "public_servant", ["culture_art", "traffic_guidance"]),
    }
    # One event per imported volunteer, each with its outbox row; nothing for the refused rows.
    assert await volunteer_events(registry) == 2
    outbox, events = registry.events.schema.outbox, registry.events.schema.events
    assert await scalar(registry, select(func.count()).select_from(outbox)) == await scalar(
        registry, select(func.count()).select_from(events)
    )
    assert await registry.events.load("volunteer", "V00000003") == []
    assert await handlers.personal_data(registry, "V00000001") == {"name": "王小明", "id_number": GOOD_1, "phone": "13912340001"}
    # Numbers taken for the refused rows were given back: the next registration is V00000003.
    assert await scalar(registry, select(store.counters.c.value).where(store.counters.c.name == "V")) == 2


async def test_importing_the_same_file_again_imports_nothing_and_reports_the_rows_as_already_registered(
    registry: Registry,
) -> None:
    await import_volunteers(registry, STAFF, [EXPORT.encode()], today=TODAY)
    before = await volunteer_events(registry)

    again = await import_volunteers(registry, STAFF, [EXPORT.encode()], today=TODAY, batch_size=2)

    assert (again.rows, again.imported, again.skipped, again.refused) == (9, 0, 3, 6)
    skipped = [(p.line, p.reason) for p in again.problems if p.outcome == "skipped"]
    assert skipped == [
        (2, "already registered as V00000001"),
        (8, "already registered as V00000001"),
        (9, "already registered as V00000002"),
    ]
    assert await volunteer_events(registry) == before == 2
    assert await scalar(registry, select(store.counters.c.value).where(store.counters.c.name == "V")) == 2


async def test_an_importer_is_told_who_holds_an_id_number_only_within_their_reach(registry: Registry) -> None:
    header = "序号,姓名,性别,身份证号,手机号,所属社区代码,政治面貌,技能,同意授权\n"
    first = header + f"1,王小明,男,{GOOD_1},13912340001,370303001001,群众,,是\n2,周敏,女,{GOOD_5},13912340008,370303001002,群众,,是\n"
    await import_volunteers(registry, STAFF, [first.encode()], today=TODAY)  # V00000001 in …001, V00000002 in …002
    again = header + f"1,王小明,男,{GOOD_1},13912340001,370303001001,群众,,是\n2,周敏,女,{GOOD_5},13912340008,370303001001,群众,,是\n"

    station = await import_volunteers(registry, STAFF, [again.encode()], today=TODAY, reaches=lambda path: "370303001001" in path)

    assert (station.imported, station.skipped) == (0, 2)
    assert [(p.line, p.reason) for p in station.problems] == [
        (2, "already registered as V00000001"),
        (3, "already registered, outside your part of the city"),
    ]


async def test_a_gb18030_file_imports_as_its_utf8_twin(registry: Registry) -> None:
    report = await import_volunteers(registry, STAFF, chunks(EXPORT.encode("gb18030")), today=TODAY)

    assert report.encoding == "gb18030"
    assert (report.imported, report.skipped, report.refused) == (2, 1, 6)
    assert problems(report) == EXPECTED_PROBLEMS
    assert (await handlers.personal_data(registry, "V00000002"))["name"] == "周敏"


async def test_english_headers_and_values_and_no_consent_column_mean_consented(registry: Registry) -> None:
    english = (
        "Name,ID_Number,Phone,Community_Code,Political_Status,Skills,Tags\r\n"
        f"Wang Xiaoming,{GOOD_1.lower()},+86 139-1234-0001,370303001001,league_member,First_Aid; it_support,有车\r\n"
        f'"Li, Hua",{GOOD_2},13912340002,370303001002,,,\r\n'
        "\r\n"
        f"Zhang Wei,{GOOD_3},13912340003,370303001001,member,,\r\n"
        f"Liu Yang,{GOOD_4},13912340004,370303001001,masses,knitting,\r\n"
    )
    report = await import_volunteers(registry, STAFF, [english.encode()], today=TODAY)

    assert (report.rows, report.imported, report.refused) == (4, 2, 2)
    assert [(p.line, p.field) for p in report.problems] == [(5, "political_status"), (6, "skills")]
    assert "not in the skill taxonomy: knitting" in report.problems[1].reason
    assert await imported_rows(registry) == {
        "V00000001": ("370303001001", "league_member", ["first_aid", "it_support"]),
        "V00000002": ("370303001002", "masses", []),
    }
    assert (await handlers.personal_data(registry, "V00000002"))["name"] == "Li, Hua"


async def test_an_imported_volunteer_is_stored_as_a_single_registration_stores_them(registry: Registry) -> None:
    """The batch path writes rows, events and views itself: it must match `register` exactly."""
    row = f"姓名,身份证号,手机号,所属社区代码,政治面貌,技能,标签\n王小明,{GOOD_1},13912340001,370303001001,中共党员,急救;助老,有车;会说方言\n"
    await import_volunteers(registry, STAFF, [row.encode()], today=TODAY)
    await handlers.register(
        registry, STAFF, name="王小明", id_number=resident_id("37030319850612004"), phone="13912340001", community_code="370303001001",
        political_status="party_member", skills=["first_aid", "elder_care"], tags=["有车", "会说方言"], consent=True, today=TODAY,
    )
    v, s = store.volunteers, store.volunteer_skills
    varying = {"volunteer_number", "id_index", "name_sealed", "id_number_sealed", "phone_sealed", "registered_at", "consented_at"}
    async with registry.events.engine.connect() as conn:
        rows = (await conn.execute(select(v).order_by(v.c.volunteer_number))).mappings().all()
        skills = (await conn.execute(select(s.c.volunteer_number, s.c.skill).order_by(s.c.volunteer_number, s.c.skill))).all()
        outbox = (await conn.execute(select(registry.events.schema.outbox.c.subject))).scalars().all()
    imported, registered = ({k: val for k, val in r.items() if k not in varying} for r in rows)
    assert imported == registered
    assert [skill for n, skill in skills if n == "V00000001"] == [skill for n, skill in skills if n == "V00000002"]
    (one,), (two,) = await registry.events.load("volunteer", "V00000001"), await registry.events.load("volunteer", "V00000002")
    same = {"volunteer_number", "consented_at"}
    assert {k: val for k, val in one.payload.items() if k not in same} == {k: val for k, val in two.payload.items() if k not in same}
    assert (one.type, one.aggregate_version, one.org_path, one.actor) == (two.type, two.aggregate_version, two.org_path, two.actor)
    assert outbox.count("registry.370303.volunteer.registered") == 2


async def test_a_batch_that_fails_in_the_database_falls_back_to_a_transaction_per_row(registry: Registry) -> None:
    # The database itself refuses one row (as a concurrent registration of the same person would).
    doomed = registry.vault.id_index(GOOD_3)
    async with registry.events.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(text(
                f"CREATE TRIGGER refuse_one BEFORE INSERT ON volunteers WHEN NEW.id_index = '{doomed}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ))
        else:
            await conn.execute(text(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id_index = '{doomed}' THEN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'unique_violation'; END IF; "
                "RETURN NEW; END $$"
            ))
            await conn.execute(text("CREATE TRIGGER refuse_one BEFORE INSERT ON volunteers FOR EACH ROW EXECUTE FUNCTION refuse_one()"))
    lines = [f"{name},{number},1391234000{n},370303001001" for n, (name, number) in enumerate(
        [("甲", GOOD_1), ("乙", GOOD_2), ("丙", GOOD_3), ("丁", GOOD_4)], start=1
    )]
    body = "姓名,身份证号,手机号,社区代码\n" + "\n".join(lines)
    report = await import_volunteers(registry, STAFF, [body.encode()], today=TODAY)

    assert (report.imported, report.refused) == (3, 1)
    assert [(p.line, p.outcome, p.field) for p in report.problems] == [(4, "refused", "id_number")]
    assert sorted(await imported_rows(registry)) == ["V00000001", "V00000002", "V00000003"]
    assert await volunteer_events(registry) == 3


async def test_the_importer_reads_the_file_as_it_goes_not_all_at_once(registry: Registry) -> None:
    total, consumed, at_first_commit = 20_000, 0, []

    def lines() -> Iterator[bytes]:
        nonlocal consumed
        yield "姓名,身份证号,手机号,社区代码\n".encode()
        for n in range(total):
            consumed += 1
            yield f"某{n},{n:018d},1391234{n % 10_000:04d},370303001001\n".encode()

    def committed(report: ImportReport) -> None:
        if not at_first_commit:
            at_first_commit.append((report.rows, consumed))

    report = await import_volunteers(registry, STAFF, lines(), today=TODAY, batch_size=100, on_batch=committed)

    assert report.rows == total and consumed == total
    rows, read = at_first_commit[0]
    # By the first commit: the 64 KiB the encoding is decided from, and little more.
    assert rows == 100 and read < (importer.SNIFF_BYTES // 40) + 200 < total // 4


async def test_problems_beyond_the_cap_are_counted_and_all_are_written_to_the_report_file(registry: Registry) -> None:
    bad = "".join(f"某{n},1234,13912340001,370303001001\n" for n in range(5))
    written = io.StringIO()
    report = await import_volunteers(
        registry, STAFF, [("姓名,身份证号,手机号,社区代码\n" + bad).encode()], today=TODAY, keep_problems=3, problems_to=written,
    )
    assert report.refused == 5 and len(report.problems) == 3 and report.problems_not_kept == 2
    assert report.as_dict(problems=1)["problems_not_listed"] == 4
    lines = written.getvalue().splitlines()
    assert lines[0] == "line,outcome,field,reason" and len(lines) == 6
    assert lines[1] == "2,refused,id_number,a resident ID number is 17 digits and a check digit or X"


async def test_a_file_without_a_required_column_is_refused_before_anything_is_written(registry: Registry) -> None:
    with pytest.raises(Invalid, match="the header lacks phone"):
        await import_volunteers(registry, STAFF, [f"姓名,身份证号,社区代码\n王,{GOOD_1},370303001001\n".encode()], today=TODAY)
    assert await volunteer_events(registry) == 0


async def test_a_quote_never_closed_stops_the_import_after_the_rows_before_it(registry: Registry) -> None:
    # The quote swallows every line after it until the field is too long for a CSV reader.
    rest = "".join(f"某{n},{GOOD_2},13912340002,370303001001\n" for n in range(5_000))
    body = f'姓名,身份证号,手机号,社区代码\n王,{GOOD_1},13912340001,370303001001\n"李,{GOOD_2}\n{rest}'
    report = await import_volunteers(registry, STAFF, [body.encode()], today=TODAY)
    assert report.imported == 1 and report.rows == 1
    assert report.stopped is not None and report.stopped.startswith("line 3: field larger than field limit")


async def test_bytes_that_are_not_utf8_after_the_head_stop_the_import_after_the_rows_before(registry: Registry) -> None:
    good = f"王,{GOOD_1},13912340001,370303001001\n"
    filler = "".join(f"某{n},1234,13912340001,370303001001\n" for n in range(3_000))  # > 64 KiB, all refused
    body = ("姓名,身份证号,手机号,社区代码\n" + good + filler).encode() + b"\xff\xfe,1,2,3\n"
    report = await import_volunteers(registry, STAFF, chunks(body, 4096), today=TODAY)
    assert report.encoding == "utf-8"
    assert (report.rows, report.imported, report.refused) == (3_001, 1, 3_000)
    assert report.stopped == "line 3003: not valid utf-8 (the encoding of the start of the file)"


async def test_bytes_that_are_neither_utf8_nor_gb18030_are_refused(registry: Registry) -> None:
    with pytest.raises(Invalid, match="neither UTF-8 nor GB18030"):
        await import_volunteers(registry, STAFF, [b"\xff\xfe\xff\xfe\x80\x80"], today=TODAY)


# --- through the HTTP API, with the relay publishing to NATS -----------------------------------


@contextlib.asynccontextmanager
async def registry_app(nats_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        RegistrySettings(
            nats_url=nats_url, database_url=database_url,
            personal_data_key=TEST_PERSONAL_DATA_KEY, id_index_key=TEST_ID_INDEX_KEY,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://registry", headers=ADMIN) as client:
        await load_tree(app.state.registry, STAFF, TREE)
        yield client


async def test_the_endpoint_streams_the_body_and_answers_the_report(nats_url: str, database_url: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks(EXPORT.encode("gb18030"), 100):
            yield chunk
            await asyncio.sleep(0)

    async with registry_app(nats_url, database_url) as client:
        wrong = await client.post("/volunteers/import", content=b"{}", headers={"content-type": "application/json"})
        assert wrong.status_code == 415
        headless = await client.post("/volunteers/import", content="姓名\n王\n".encode(), headers={"content-type": "text/csv"})
        assert headless.status_code == 422 and "the header lacks" in headless.json()["detail"]

        response = await client.post(
            "/volunteers/import", content=body(), headers={"content-type": "text/csv; charset=gb18030", **staff()}
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert {k: report[k] for k in ("rows", "imported", "skipped", "refused", "encoding", "stopped")} == {
            "rows": 9, "imported": 2, "skipped": 1, "refused": 6, "encoding": "gb18030", "stopped": None,
        }
        assert [(p["line"], p["outcome"], p["field"], p["reason"]) for p in report["problems"]] == EXPECTED_PROBLEMS
        assert report["problems_not_listed"] == 0

        again = (await client.post("/volunteers/import", content=EXPORT.encode(), headers={"content-type": "text/csv"})).json()
        assert (again["imported"], again["skipped"]) == (0, 3)

        # The relay was woken by the import's commits: both registrations reach the stream.
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()

            async def registered() -> int:
                return (await js.stream_info("REGISTRY")).state.messages

            # The tree (5 org units) and the two volunteers.
            assert await eventually(registered, lambda n: n >= 7) == 7
            message = await js.get_last_msg("REGISTRY", "registry.370303.volunteer.registered")
            assert b"V00000002" in message.data
        finally:
            await nc.close()


# --- the command line --------------------------------------------------------------------------


async def test_the_command_imports_a_file_with_a_progress_bar_and_writes_the_bad_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    keys = VaultKeys.from_settings(TEST_PERSONAL_DATA_KEY, TEST_ID_INDEX_KEY)
    registry = Registry(EventStore(make_engine(url), store.schema), Vault(keys))
    await registry.events.create_tables()
    await load_tree(registry, STAFF, TREE)
    await registry.events.engine.dispose()
    export = tmp_path / "志愿者.csv"
    export.write_bytes(EXPORT.encode("gb18030"))
    env = {**os.environ, "BEACON_PERSONAL_DATA_KEY": TEST_PERSONAL_DATA_KEY, "BEACON_ID_INDEX_KEY": TEST_ID_INDEX_KEY}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "services.registry", "import-volunteers", str(export), "--database-url", url, *extra]
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)

    first = await asyncio.to_thread(run, "--report", str(tmp_path / "bad-rows.csv"))
    assert first.returncode == 0, first.stderr
    assert "9 rows read" in first.stdout and "2 imported, 1 skipped (already registered), 6 refused" in first.stdout
    assert "line 3: refused: the check character does not match" in first.stdout
    written = (tmp_path / "bad-rows.csv").read_text(encoding="utf-8-sig").splitlines()
    assert written[0] == "line,outcome,field,reason" and len(written) == 1 + 7

    second = await asyncio.to_thread(run)
    assert second.returncode == 0, second.stderr
    assert "0 imported, 3 skipped (already registered), 6 refused" in second.stdout

    missing = await asyncio.to_thread(
        lambda: subprocess.run(
            [sys.executable, "-m", "services.registry", "import-volunteers", str(tmp_path / "none.csv"), "--database-url", url],
            check=False, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
        )
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr

    registry = Registry(EventStore(make_engine(url), store.schema), Vault(keys))
    try:
        assert await handlers.personal_data(registry, "V00000002") == {"name": "周敏", "id_number": GOOD_5, "phone": "13912340008"}
        outbox = registry.events.schema.outbox
        unpublished = await scalar(registry, select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
        assert unpublished == len(TREE) + 2  # published by the service's relay when it runs
    finally:
        await registry.events.engine.dispose()
