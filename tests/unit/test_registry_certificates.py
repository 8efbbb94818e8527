"""Service-record certificates' pure rules: the digest over the records' event ids, what a
certificate is issued over, when its records no longer stand, and what its paper says (read back
from the PDF)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registry.certificate_pdf import render
from services.registry.domain import certificates
from services.registry.domain.certificates import Certificate, CertifiedRecord, Holder, RecordNow
from shared.errors import Conflict, Invalid
from tests.infra.pdf_text import text_of

# 2026-04-01 10:00 in the city.
ISSUED_AT = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
TODAY = date(2026, 4, 1)
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def a_record(n: int, *, day: date = date(2026, 2, 12), minutes: int = 120, hours: str = "2.00") -> CertifiedRecord:
    return CertifiedRecord(
        f"R{n:08d}", str(uuid.uuid4()), day, minutes, Decimal(hours), "ST-DENGHUI", "A00000001", "civilised_traffic", "public_needs"
    )  # fmt: skip


def issued(
    records: list[CertifiedRecord], *, period_from: date = date(2026, 1, 1), period_to: date = date(2026, 3, 31)
) -> certificates.CertificateIssued:
    return certificates.issue(
        "ZYZM-2026-000001",
        "V00000001",
        period_from,
        period_to,
        records,
        issuer_code="370303001000",
        issued_at=ISSUED_AT,
    )


# --- The digest ------------------------------------------------------------------------------------


def test_the_digest_is_sha256_of_the_sorted_lower_case_event_ids_joined_by_newlines() -> None:
    ids = ["0190b5e0-0000-7000-8000-00000000000b", "0190B5E0-0000-7000-8000-00000000000A"]
    expected = hashlib.sha256(b"0190b5e0-0000-7000-8000-00000000000a\n0190b5e0-0000-7000-8000-00000000000b").hexdigest()
    assert certificates.digest(ids) == expected


@given(st.lists(st.uuids(), min_size=1, max_size=30, unique=True), st.randoms())
def test_the_same_event_ids_in_any_order_give_the_same_digest(ids: list[uuid.UUID], random) -> None:  # type: ignore[no-untyped-def]
    shuffled = [str(i) for i in ids]
    random.shuffle(shuffled)
    assert certificates.digest(shuffled) == certificates.digest(str(i) for i in ids)


@given(st.lists(st.uuids(), min_size=1, max_size=30, unique=True), st.data())
def test_changing_adding_or_leaving_out_one_event_id_changes_the_digest(ids: list[uuid.UUID], data) -> None:  # type: ignore[no-untyped-def]
    original = certificates.digest(str(i) for i in ids)
    index = data.draw(st.integers(0, len(ids) - 1))
    other = data.draw(st.uuids().filter(lambda u: u not in ids))
    altered = [*ids[:index], other, *ids[index + 1 :]]
    assert certificates.digest(str(i) for i in altered) != original
    assert certificates.digest(str(i) for i in [*ids, other]) != original
    if len(ids) > 1:
        assert certificates.digest(str(i) for i in ids[:index] + ids[index + 1 :]) != original


# --- Issuing ---------------------------------------------------------------------------------------


def test_a_certificate_counts_its_records_and_sums_their_minutes_and_hours() -> None:
    records = [
        a_record(1),
        a_record(2, minutes=95, hours="1.50"),
        a_record(3, day=date(2026, 3, 31), minutes=10, hours="0"),
    ]
    event = issued(records)
    assert (event.record_count, event.total_minutes, event.total_hours) == (3, 225, Decimal("3.50"))
    assert event.digest == certificates.digest(r.event_id for r in records)
    assert (event.period_from, event.period_to, event.issuer_code) == (
        date(2026, 1, 1),
        date(2026, 3, 31),
        "370303001000",
    )


def test_a_period_without_confirmed_records_gets_no_certificate() -> None:
    with pytest.raises(Conflict) as refused:
        issued([])
    assert refused.value.details["state"] == "no_records"


@pytest.mark.parametrize(
    ("period_from", "period_to", "field"),
    [
        (date(2026, 3, 1), date(2026, 2, 28), "to"),  # backwards
        (date(2026, 3, 1), TODAY + timedelta(days=1), "to"),  # days still to come
        (date(2010, 1, 1), date(2026, 3, 31), "from"),  # longer than a decade
    ],
)
def test_a_period_that_is_backwards_not_over_or_too_long_is_refused_naming_the_field(
    period_from: date, period_to: date, field: str
) -> None:
    with pytest.raises(Invalid) as refused:
        issued([a_record(1, day=period_from)], period_from=period_from, period_to=period_to)
    assert refused.value.field == field


def test_a_period_ending_today_in_the_city_is_accepted() -> None:
    # 2026-04-01 02:00 UTC is 10:00 on the 1st in the city.
    assert issued([a_record(1, day=TODAY)], period_to=TODAY).period_to == TODAY


def test_the_number_runs_in_a_series_per_year() -> None:
    assert certificates.number(2026, 42) == "ZYZM-2026-000042"
    assert certificates.series(2026) == "ZYZM-2026-"


# --- Whether the records still stand ----------------------------------------------------------------


def test_records_stand_while_each_is_confirmed_by_the_event_certified() -> None:
    records = [a_record(1), a_record(2)]
    now = {r.record_id: RecordNow(r.event_id, certificates.CONFIRMED) for r in records}
    assert certificates.changed_records(records, now) == []


def test_a_record_revoked_adjusted_or_unknown_since_is_changed() -> None:
    revoked, adjusted, kept, unknown = a_record(1), a_record(2), a_record(3), a_record(4)
    now = {
        revoked.record_id: RecordNow(str(uuid.uuid4()), certificates.REVOKED),
        adjusted.record_id: RecordNow(str(uuid.uuid4()), certificates.CONFIRMED),
        kept.record_id: RecordNow(kept.event_id, certificates.CONFIRMED),
    }
    assert certificates.changed_records([revoked, adjusted, kept, unknown], now) == [
        revoked.record_id, adjusted.record_id, unknown.record_id,
    ]  # fmt: skip


# --- The paper --------------------------------------------------------------------------------------


def certificate(records: list[CertifiedRecord]) -> Certificate:
    event = issued(records)
    return Certificate(
        event.certificate_number, event.volunteer_number, event.period_from, event.period_to, ISSUED_AT,
        event.issuer_code, "车站街道", tuple(records), event.total_minutes, event.total_hours, event.digest,
    )  # fmt: skip


def test_the_pdf_shows_the_masked_holder_the_records_total_issuer_number_date_digest_and_where_to_verify() -> None:
    records = [a_record(1, day=date(2026, 2, 13)), a_record(2, day=date(2026, 2, 12), minutes=90, hours="1.50")]
    paper = certificate(records)
    sheet = certificates.sheet(
        paper,
        Holder("王*", "370303********002X"),
        {"ST-DENGHUI": "灯会站"},
        "/certificates/ZYZM-2026-000001/verification",
    )
    text = text_of(render(sheet, footer=paper.number))

    assert text.startswith("ZYZM-2026-000001")  # the footer of the first page
    for shown in (
        "志愿服务记录证明", "王*", "370303********002X", "V00000001", "2026-01-01 至 2026-03-31",
        "灯会站 · 文明交通 · 社会公共需要", "合计 2 条记录", "3.50", "车站街道", "2026-04-01",
        "ZYZM-2026-000001", paper.digest, "/certificates/ZYZM-2026-000001/verification",
    ):  # fmt: skip
        assert shown in text, shown
    # The records in date order, each with its day, hours, record number and event id.
    lines = text.splitlines()
    assert lines.index("R00000002") < lines.index("R00000001")
    for line in ("2026-02-12", "1.50", "2026-02-13", "2.00", *(r.event_id for r in records)):
        assert line in lines, line
    # The paper alone is enough to recompute the digest it prints.
    assert certificates.digest(UUID_TEXT.findall(text)) == paper.digest


def test_a_holder_whose_data_was_destroyed_is_shown_as_such() -> None:
    paper = certificate([a_record(1)])
    sheet = certificates.sheet(paper, Holder(None, None), {}, "/certificates/ZYZM-2026-000001/verification")
    text = text_of(render(sheet, footer=paper.number))
    assert text.count("（个人信息已依申请销毁）") == 2
    assert "ST-DENGHUI" in text  # a site registry has no name for is shown by its id


def test_a_year_of_nightly_records_runs_over_pages_with_the_header_and_number_on_each() -> None:
    start = date(2025, 1, 1)
    records = [a_record(n, day=start + timedelta(days=n)) for n in range(300)]
    event = issued(records, period_from=start, period_to=date(2025, 12, 31))
    paper = Certificate(
        event.certificate_number, event.volunteer_number, event.period_from, event.period_to, ISSUED_AT,
        event.issuer_code, "车站街道", tuple(records), event.total_minutes, event.total_hours, event.digest,
    )  # fmt: skip
    text = text_of(render(certificates.sheet(paper, Holder("王*", None), {}, "/v"), footer=paper.number))
    pages = re.split(r"^ZYZM-2026-000001  \d+$", text, flags=re.MULTILINE)[1:]  # each page starts with its footer
    assert len(pages) > 3
    with_records = [page for page in pages if re.search(r"^R\d{8}$", page, flags=re.MULTILINE)]
    assert len(with_records) >= len(pages) - 1
    assert all("记录编号 / 凭证号" in page for page in with_records)  # the table's header on each of them
    assert "合计 300 条记录" in text and "600.00" in text
    assert certificates.digest(UUID_TEXT.findall(text)) == paper.digest
