"""Service-record certificates (志愿服务记录证明): which confirmed records one covers, the digest that
binds a certificate number to exactly those records, whether they still stand, and what the paper
says. Pure: the records come in as dispatch published them, the sheet goes out to be printed.

The 2020 national measures (志愿服务记录与证明出具办法) ask a certificate to show who the volunteer
is, the service recorded (when, where, what, how long), the total time, who issues it and when,
and to be checkable; here the check is the digest over the records' event ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from shared.citytime import city_date
from shared.errors import Conflict, Invalid
from shared.events.registry import CertificateIssued

NUMBER_PREFIX = "ZYZM"
MAX_PERIOD_DAYS = 10 * 366  # a decade at most: a paper lists every record it covers
TITLE = "志愿服务记录证明"

CONFIRMED, REVOKED = "confirmed", "revoked"

# The five groups served (五为) and Zibo's fields of service, as the paper names them; a field
# code not listed here is printed as it is.
GROUPS_SERVED = {
    "elderly": "为老",
    "children": "为小",
    "people_in_difficulty": "为困难群体",
    "psychological_support": "心理疏导",
    "public_needs": "社会公共需要",
}
FIELDS = {
    "civilised_tourism": "文明旅游",
    "civilised_traffic": "文明交通",
    "culture_art": "文化文艺",
    "tutoring": "助学辅导",
    "smart_help_for_elderly": "智慧助老",
    "mental_health": "心理健康",
    "environment": "环境保护",
    "legal_aid": "法律援助",
    "science_popularisation": "科学普及",
    "public_security": "平安建设",
}


@dataclass(frozen=True)
class CertifiedRecord:
    """A confirmed service record as a certificate covers it. `event_id` is the event that set what
    it counts now (its confirmation, or its last adjustment): a later change makes a new one."""

    record_id: str
    event_id: str
    service_date: date
    minutes: int
    hours: Decimal
    site_id: str
    activity_id: str
    field: str
    group_served: str


@dataclass(frozen=True)
class RecordNow:
    """Where a record stands now, as far as registry has heard from dispatch."""

    event_id: str
    state: str  # confirmed, revoked


@dataclass(frozen=True)
class Certificate:
    number: str
    volunteer_number: str
    period_from: date
    period_to: date
    issued_at: datetime
    issuer_code: str
    issuer_name: str
    records: tuple[CertifiedRecord, ...]
    total_minutes: int
    total_hours: Decimal
    digest: str

    @property
    def issued_on(self) -> date:
        return city_date(self.issued_at)


def digest(event_ids: Iterable[str]) -> str:
    """SHA-256 (lower-case hex) of the event ids, canonical lower-case UUIDs, sorted, joined by
    "\\n": the same set in any order gives the same digest, any other set another one."""
    canonical = sorted(str(UUID(str(event_id))) for event_id in event_ids)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def number(year: int, serial: int) -> str:
    return f"{NUMBER_PREFIX}-{year:04d}-{serial:06d}"


def series(year: int) -> str:
    """The name of the numbered series of a year's certificates (shared/numbering.py)."""
    return f"{NUMBER_PREFIX}-{year:04d}-"


def check_period(period_from: date, period_to: date, today: date) -> None:
    """A period of service days that has ended by today: a certificate says it lists every record
    of its period, which it could not say of days still to come."""
    if period_to < period_from:
        raise Invalid("the period ends on or after the day it starts", field="to")
    if period_to > today:
        raise Invalid(f"the period must end by today ({today.isoformat()})", field="to")
    if (period_to - period_from).days >= MAX_PERIOD_DAYS:
        raise Invalid(f"a certificate covers at most {MAX_PERIOD_DAYS} days", field="from")


def issue(
    certificate_number: str,
    volunteer_number: str,
    period_from: date,
    period_to: date,
    records: Sequence[CertifiedRecord],
    *,
    issuer_code: str,
    issued_at: datetime,
) -> CertificateIssued:
    """Decide a certificate over the records confirmed in the period (the caller chose them)."""
    check_period(period_from, period_to, city_date(issued_at))
    outside = [r.record_id for r in records if not period_from <= r.service_date <= period_to]
    if outside:
        raise ValueError(f"records outside the period: {', '.join(outside)}")
    if not records:
        raise Conflict(
            f"volunteer {volunteer_number} has no confirmed service records from "
            f"{period_from.isoformat()} to {period_to.isoformat()}",
            state="no_records",
        )
    return CertificateIssued(
        certificate_number=certificate_number,
        volunteer_number=volunteer_number,
        period_from=period_from,
        period_to=period_to,
        record_count=len(records),
        total_minutes=sum(r.minutes for r in records),
        total_hours=sum((r.hours for r in records), Decimal(0)),
        digest=digest(r.event_id for r in records),
        issuer_code=issuer_code,
        issued_at=issued_at,
    )


def changed_records(certified: Sequence[CertifiedRecord], now: Mapping[str, RecordNow]) -> list[str]:
    """The certified records that no longer stand as certified: revoked, or adjusted since (a new
    event sets what they count), or unknown here."""
    changed = []
    for record in certified:
        current = now.get(record.record_id)
        if current is None or current.event_id != record.event_id or current.state != CONFIRMED:
            changed.append(record.record_id)
    return changed


# --- What the paper says ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """The volunteer as the paper shows them: masked, or None once their data was destroyed."""

    masked_name: str | None
    masked_id_number: str | None


@dataclass(frozen=True)
class SheetRow:
    service_date: str
    place_and_activity: str
    hours: str
    record_id: str
    event_id: str


@dataclass(frozen=True)
class Sheet:
    """Every line of a certificate, in print order; the PDF only lays them out."""

    title: str
    fields: tuple[tuple[str, str], ...]
    statement: str
    rows: tuple[SheetRow, ...]
    total: tuple[str, str]
    closing: tuple[tuple[str, str], ...]
    digest: tuple[str, str]  # its label and the digest, set apart: it is copied by hand or machine
    digest_note: str


def hours_text(hours: Decimal) -> str:
    return f"{hours.quantize(Decimal('0.01')):f}"


def activity_text(record: CertifiedRecord, site_names: Mapping[str, str]) -> str:
    site = site_names.get(record.site_id, record.site_id)
    field = FIELDS.get(record.field, record.field)
    group = GROUPS_SERVED.get(record.group_served, record.group_served)
    return f"{site} · {field} · {group} ({record.activity_id})"


def sheet(certificate: Certificate, holder: Holder, site_names: Mapping[str, str], verification_path: str) -> Sheet:
    withheld = "（个人信息已依申请销毁）"
    records = sorted(certificate.records, key=lambda r: (r.service_date, r.record_id))
    return Sheet(
        title=TITLE,
        fields=(
            ("证明编号", certificate.number),
            ("志愿者姓名", holder.masked_name or withheld),
            ("身份证号码", holder.masked_id_number or withheld),
            ("志愿者编号", certificate.volunteer_number),
            ("服务期间", f"{certificate.period_from.isoformat()} 至 {certificate.period_to.isoformat()}"),
        ),
        statement=(
            f"兹证明志愿者{holder.masked_name or ''}（志愿者编号 {certificate.volunteer_number}）于 "
            f"{certificate.period_from.isoformat()} 至 {certificate.period_to.isoformat()} 期间参加志愿服务，"
            f"经组织方确认的服务记录共 {len(records)} 条，服务时长合计 {hours_text(certificate.total_hours)} 小时，"
            "明细如下。"
        ),
        rows=tuple(
            SheetRow(
                r.service_date.isoformat(), activity_text(r, site_names), hours_text(r.hours), r.record_id, r.event_id
            )
            for r in records
        ),
        total=(f"合计 {len(records)} 条记录", hours_text(certificate.total_hours)),
        closing=(
            ("出具单位", certificate.issuer_name),
            ("出具日期", certificate.issued_on.isoformat()),
            ("证明编号", certificate.number),
            ("核验地址", verification_path),
        ),
        digest=("记录摘要", certificate.digest),
        digest_note=(
            "记录摘要为上列各记录凭证号（小写）按字典序排列、以换行连接后的 SHA-256 值；"
            "凭证号变动（记录被调整或撤销）即与本证明不符。"
        ),
    )
