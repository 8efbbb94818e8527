"""Service-record certificates: issuing one over a volunteer's confirmed records in a period (the
event and the certificate's rows in one transaction), reading one back, and whether its records
still stand as certified."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import store
from services.registry.domain import certificates
from services.registry.domain.certificates import Certificate, CertifiedRecord, RecordNow
from services.registry.handlers import Registry, record
from shared.auth import Actor
from shared.citytime import city_date
from shared.db import reading
from shared.errors import Conflict, NotFound
from shared.events.common import SiteLevel

_RECORD_COLUMNS = (
    "record_id",
    "event_id",
    "service_date",
    "minutes",
    "hours",
    "site_id",
    "activity_id",
    "field",
    "group_served",
)


def _certified(row: Mapping[str, Any]) -> CertifiedRecord:
    return CertifiedRecord(**{name: row[name] for name in _RECORD_COLUMNS})


async def _issuer(conn: AsyncConnection, actor: Actor, volunteer: Mapping[str, Any]) -> tuple[str, str]:
    """In whose name the certificate is issued: staff's own node of the org tree; for the
    volunteer themselves, their community's station (or the community, where it has none)."""
    if actor.is_staff:
        node = await store.find_org_unit(conn, actor.scope)
        if node is not None:
            return node.code, node.name
    s = store.sites
    station = (
        await conn.execute(
            select(s.c.site_id, s.c.name)
            .where(
                s.c.org_unit_code == volunteer["community_code"],
                s.c.level == SiteLevel.station,
                s.c.closed_on.is_(None),
            )
            .order_by(s.c.opened_on, s.c.site_id)
            .limit(1)
        )
    ).first()
    if station is not None:
        return station.site_id, station.name
    community = await store.find_org_unit(conn, volunteer["community_code"])
    assert community is not None  # a volunteer's community is in the tree
    return community.code, community.name


async def issue(
    registry: Registry, actor: Actor, volunteer_number: str, *, period_from: date, period_to: date, now: datetime
) -> Certificate:
    """A certificate over the volunteer's records confirmed (and not revoked) in the period, as
    registry has heard of them from dispatch."""
    certificates.check_period(period_from, period_to, city_date(now))
    v, r = store.volunteers, store.service_records
    async with registry.events.transaction() as tx:
        volunteer = (
            (await tx.conn.execute(select(v).where(v.c.volunteer_number == volunteer_number))).mappings().first()
        )
        if volunteer is None:
            raise NotFound(f"unknown volunteer {volunteer_number}")
        if volunteer["personal_data_destroyed"]:
            raise Conflict(
                f"volunteer {volunteer_number}'s personal data was destroyed at their request: "
                "a certificate names its holder",
                state="personal_data_destroyed",
            )
        rows = await tx.conn.execute(
            select(r)
            .where(
                r.c.volunteer_number == volunteer_number,
                r.c.state == certificates.CONFIRMED,
                r.c.service_date >= period_from,
                r.c.service_date <= period_to,
            )
            .order_by(r.c.service_date, r.c.record_id)
        )
        covered = [_certified(row) for row in rows.mappings()]
        issuer_code, issuer_name = await _issuer(tx.conn, actor, volunteer)
        # Numbered by the year of issue; a refusal below rolls the number back with the rest.
        number = await store.next_number(tx.conn, certificates.series(city_date(now).year), digits=6)
        event = certificates.issue(
            number, volunteer_number, period_from, period_to, covered, issuer_code=issuer_code, issued_at=now
        )
        org_path = tuple(volunteer["org_path"].split("/"))
        await record(tx, number, 0, [event], org_path=org_path, actor=actor)
        await tx.conn.execute(
            store.certificates.insert().values(
                certificate_number=number, volunteer_number=volunteer_number, period_from=period_from,
                period_to=period_to, issued_at=now, issuer_code=issuer_code, issuer_name=issuer_name,
                record_count=event.record_count, total_minutes=event.total_minutes, total_hours=event.total_hours,
                digest=event.digest,
            )
        )  # fmt: skip
        await tx.conn.execute(
            store.certificate_records.insert(),
            [{"certificate_number": number, **{name: getattr(c, name) for name in _RECORD_COLUMNS}} for c in covered],
        )
    return Certificate(
        number, volunteer_number, period_from, period_to, now, issuer_code, issuer_name, tuple(covered),
        event.total_minutes, event.total_hours, event.digest,
    )  # fmt: skip


async def find(registry: Registry, number: str) -> Certificate | None:
    c, cr = store.certificates, store.certificate_records
    async with reading(registry.events.engine) as conn:
        row = (await conn.execute(select(c).where(c.c.certificate_number == number))).mappings().first()
        if row is None:
            return None
        covered = await conn.execute(
            select(cr).where(cr.c.certificate_number == number).order_by(cr.c.service_date, cr.c.record_id)
        )
        records = tuple(_certified(r) for r in covered.mappings())
    return Certificate(
        row["certificate_number"], row["volunteer_number"], row["period_from"], row["period_to"], row["issued_at"],
        row["issuer_code"], row["issuer_name"], records, row["total_minutes"], row["total_hours"], row["digest"],
    )  # fmt: skip


async def records_now(registry: Registry, record_ids: Iterable[str]) -> dict[str, RecordNow]:
    r = store.service_records
    async with reading(registry.events.engine) as conn:
        rows = await conn.execute(
            select(r.c.record_id, r.c.event_id, r.c.state).where(r.c.record_id.in_(sorted(set(record_ids))))
        )
        return {row.record_id: RecordNow(row.event_id, row.state) for row in rows}


async def site_names(registry: Registry, site_ids: Iterable[str]) -> dict[str, str]:
    s = store.sites
    async with reading(registry.events.engine) as conn:
        rows = await conn.execute(select(s.c.site_id, s.c.name).where(s.c.site_id.in_(sorted(set(site_ids)))))
        return {row.site_id: row.name for row in rows}
