"""Service-record certificates end to end over a real NATS and registry's store on SQLite and
PostgreSQL: dispatch confirms records, registry learns them from dispatch's stream, a certificate
is issued over them, its PDF reads back with the masked holder, the records and the digest, the
public verification matches the paper and refuses a doctored one, and a record revoked or
adjusted later turns the certificate's answer to "changed". No event carries personal data (the
suite's personal-data guard watches every envelope made)."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.dispatch.app import create_app as dispatch_app
from services.registry import store, subscribers
from services.registry.app import create_app as registry_app
from services.registry.domain import certificates
from shared.auth import Role
from shared.catalog import catalog
from shared.citytime import CITY_ZONE, city_date
from shared.envelope import utcnow
from shared.events.dispatch import GroupServed, RecordSource, ServiceHoursConfirmed, ServiceHoursRevoked
from shared.settings import ServiceSettings
from tests.factories import resident_id
from tests.infra.auth import bearer
from tests.infra.city import COMMUNITY, STAFF, STREET, TREE, ok, registry_settings, running
from tests.infra.nats import streams_exist
from tests.infra.pdf_text import text_of
from tests.infra.waiting import eventually

pytestmark = pytest.mark.nats

SITE = "ST-HEPING"
NAME, ID_NUMBER = "李晓梅", resident_id("37030319850601002")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TODAY = city_date(utcnow())


@dataclass
class City:
    registry: httpx.AsyncClient
    public: httpx.AsyncClient  # no token at all
    dispatch: httpx.AsyncClient
    registry_app: Any
    dispatch_app: Any
    volunteer: str
    activity: str


@contextlib.asynccontextmanager
async def city(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[City]:
    await streams_exist(nats_url, "points")  # dispatch follows points' time bank too
    registry_application = registry_app(registry_settings(nats_url, database_url))
    dispatch_application = dispatch_app(
        ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'dispatch.db'}")
    )
    async with (
        running(registry_application, "registry") as registry,
        running(dispatch_application, "dispatch") as dispatch,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=registry_application), base_url="http://registry"
        ) as public,
    ):
        await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
        site = {"site_id": SITE, "org_unit_code": COMMUNITY, "level": "station", "kind": "community", "name": "和平社区志愿服务站"}  # fmt: skip
        await ok(await registry.post("/sites", json=site, headers=STAFF))
        body = {
            "name": NAME,
            "id_number": ID_NUMBER,
            "phone": "13812345678",
            "community_code": COMMUNITY,
            "consent": True,
        }
        number = (await ok(await registry.post("/volunteers", json=body, headers=STAFF)))["volunteer_number"]
        await ok(await registry.post(f"/volunteers/{number}/verify", headers=STAFF))
        known = await eventually(
            lambda: dispatch.get(f"/volunteers/{number}"),
            lambda r: r.status_code == 200 and r.json()["status"] == "verified",
        )
        assert known.status_code == 200, known.text  # dispatch heard of the volunteer from registry
        activity = {
            "site_id": SITE, "kind": "festival", "theme": "lantern_festival", "field": "civilised_traffic",
            "group_served": "public_needs", "starts_on": str(TODAY - timedelta(days=10)), "ends_on": str(TODAY),
            "title": "灯会交通引导",
        }  # fmt: skip
        scheduled = await eventually(
            lambda: dispatch.post("/activities", json=activity), lambda r: r.status_code != 404
        )
        activity_id = (await ok(scheduled))["activity_id"]
        yield City(registry, public, dispatch, registry_application, dispatch_application, number, activity_id)


async def confirmed_record(town: City, days_ago: int, minutes: int) -> str:
    """Hours entered afterwards by staff and confirmed by the organiser, in dispatch."""
    day = datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), CITY_ZONE)
    entry = {
        "volunteer_number": town.volunteer, "activity_id": town.activity, "started_at": day.replace(hour=9).isoformat(),
        "ended_at": (day.replace(hour=9) + timedelta(minutes=minutes)).isoformat(), "content": "东门路口引导游客",
    }  # fmt: skip
    record_id = (await ok(await town.dispatch.post("/service-records", json=entry)))["record_id"]
    await ok(await town.dispatch.post(f"/service-records/{record_id}/confirm", json={}))
    return record_id


async def registry_knows(town: City, states: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Registry's rows of these records, once it has heard each of them reach its state."""

    async def rows() -> dict[str, dict[str, Any]]:
        table = store.service_records
        async with town.registry_app.state.registry.events.engine.connect() as conn:
            found = await conn.execute(select(table).where(table.c.record_id.in_(list(states))))
            return {row["record_id"]: dict(row) for row in found.mappings()}

    known = await eventually(rows, lambda r: {k: v["state"] for k, v in r.items()} == states)
    assert {k: v["state"] for k, v in known.items()} == states
    return known


async def dispatch_events(town: City, record_id: str) -> list[Any]:
    return await town.dispatch_app.state.runtime.store.load("service_record", record_id)


def period(days: int = 10) -> dict[str, str]:
    return {"from": str(TODAY - timedelta(days=days)), "to": str(TODAY)}


async def verification(town: City, number: str, **params: str) -> dict[str, Any]:
    return await ok(await town.public.get(f"/certificates/{number}/verification", params=params))


async def test_a_certificate_covers_the_confirmed_records_and_stops_standing_once_one_is_revoked(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    async with city(nats_url, database_url, tmp_path) as town:
        records = [
            await confirmed_record(town, 3, 120),
            await confirmed_record(town, 2, 90),
            await confirmed_record(town, 1, 60),
        ]
        known = await registry_knows(town, dict.fromkeys(records, certificates.CONFIRMED))
        confirmations = {r: str((await dispatch_events(town, r))[-1].event_id) for r in records}
        assert {r: row["event_id"] for r, row in known.items()} == confirmations

        # The volunteer asks for their own certificate.
        me = bearer(Role.volunteer, town.volunteer, account="AC000099")
        issued = await ok(
            await town.registry.post(f"/volunteers/{town.volunteer}/certificates", json=period(), headers=me)
        )
        number = issued["certificate_number"]
        assert re.fullmatch(rf"ZYZM-{TODAY.year}-\d{{6}}", number)
        assert [r["record_id"] for r in issued["records"]] == records  # by service date
        assert (issued["record_count"], issued["total_minutes"], issued["total_hours"]) == (3, 270, "4.50")
        assert issued["digest"] == certificates.digest(confirmations.values())
        assert issued["issuer"] == {"code": SITE, "name": "和平社区志愿服务站"}  # their community's station

        # The event says what was certified, and nothing of the person.
        (envelope,) = await town.registry_app.state.registry.events.load("certificate", number)
        assert envelope.type == "CertificateIssued" and envelope.org_path == ("370303", STREET, COMMUNITY)
        assert set(envelope.payload) == {
            "certificate_number", "volunteer_number", "period_from", "period_to", "record_count", "total_minutes",
            "total_hours", "digest", "issuer_code", "issued_at",
        }  # fmt: skip
        assert catalog.subject_of(envelope) == "registry.370303.certificate.issued"

        # The paper: masked holder, the records, the totals, who issued it, when, and how to check it.
        paper = await town.registry.get(f"/certificates/{number}.pdf", headers=me)
        assert paper.status_code == 200 and paper.headers["content-type"] == "application/pdf"
        assert paper.content.startswith(b"%PDF-")
        text = text_of(paper.content)
        for shown in (
            "志愿服务记录证明", "李**", ID_NUMBER[:6] + "********" + ID_NUMBER[14:], town.volunteer, number,
            "和平社区志愿服务站", "合计 3 条记录", "4.50", str(city_date(utcnow())), issued["digest"],
            f"/certificates/{number}/verification", *records,
        ):  # fmt: skip
            assert shown in text, shown
        assert NAME not in text and ID_NUMBER not in text
        printed_ids = UUID_TEXT.findall(text)
        assert sorted(printed_ids) == sorted(confirmations.values())
        printed_digest = re.search(r"^[0-9a-f]{64}$", text, flags=re.MULTILINE).group(0)  # type: ignore[union-attr]

        # Anyone holding the paper checks it: the digest printed is the one issued, the records stand.
        answer = await verification(town, number, digest=printed_digest)
        assert answer == {
            "certificate_number": number, "exists": True, "status": "valid", "issued_on": str(city_date(utcnow())),
            "record_count": 3, "total_hours": "4.50", "digest": issued["digest"], "digest_matches": True,
            "records_stand": True, "changed_records": 0,
        }  # fmt: skip
        # A paper whose record list was doctored (one record swapped for another) prints another digest.
        doctored = certificates.digest([*printed_ids[:-1], str(uuid.uuid4())])
        answer = await verification(town, number, digest=doctored)
        assert (answer["status"], answer["digest_matches"]) == ("does_not_match", False)
        one_digit_off = printed_digest[:-1] + ("0" if printed_digest[-1] != "0" else "1")
        assert (await verification(town, number, digest=one_digit_off))["status"] == "does_not_match"

        # The organiser revokes one of the records later: the certificate no longer stands as issued.
        await ok(await town.dispatch.post(f"/service-records/{records[1]}/revoke", json={"reason": "not_served"}))
        await registry_knows(town, {records[1]: certificates.REVOKED})
        answer = await verification(town, number, digest=printed_digest)
        assert (answer["status"], answer["digest_matches"], answer["records_stand"], answer["changed_records"]) == (
            "changed", True, False, 1,
        )  # fmt: skip

        # ... and adjusts another: a new event sets what it counts, so that one changed too.
        await ok(
            await town.dispatch.post(
                f"/service-records/{records[0]}/adjust", json={"minutes": 60, "reason": "left_early"}
            )
        )
        adjusted = await eventually(
            lambda: registry_knows(town, {records[0]: certificates.CONFIRMED}),
            lambda rows: rows[records[0]]["minutes"] == 60,
        )
        assert adjusted[records[0]]["event_id"] == str((await dispatch_events(town, records[0]))[-1].event_id)
        assert (await verification(town, number))["changed_records"] == 2

        # A certificate issued now covers what stands now, under the next number; the first is kept.
        again = await ok(
            await town.registry.post(f"/volunteers/{town.volunteer}/certificates", json=period(), headers=STAFF)
        )
        assert again["certificate_number"] > number
        assert [r["record_id"] for r in again["records"]] == [records[0], records[2]]
        assert (again["total_minutes"], again["total_hours"]) == (120, "2.00")
        assert again["issuer"]["code"] == "370300"  # staff issue in their own node's name (the city's admin)
        assert (await verification(town, again["certificate_number"]))["status"] == "valid"
        assert (await verification(town, number))["total_hours"] == "4.50"


async def test_what_cannot_be_certified_is_refused_with_the_reason(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    async with city(nats_url, database_url, tmp_path) as town:
        path = f"/volunteers/{town.volunteer}/certificates"
        nothing = await town.registry.post(path, json=period(), headers=STAFF)
        assert nothing.status_code == 409 and nothing.json()["state"] == "no_records"
        ahead = await town.registry.post(
            path, json={"from": str(TODAY), "to": str(TODAY + timedelta(days=1))}, headers=STAFF
        )
        assert ahead.status_code == 422 and ahead.json()["errors"][0]["field"] == "to"
        garbled = await town.registry.post(path, json={"from": "yesterday", "to": str(TODAY)}, headers=STAFF)
        assert garbled.status_code == 422 and garbled.json()["errors"][0]["field"] == "from"
        leader = bearer(Role.team_leader, "T00000001")
        assert (await town.registry.post(path, json=period(), headers=leader)).status_code == 403
        other = bearer(Role.volunteer, "V99999999")
        assert (await town.registry.post(path, json=period(), headers=other)).status_code == 404

        unknown = await verification(town, f"ZYZM-{TODAY.year}-999999")
        assert unknown == {"certificate_number": f"ZYZM-{TODAY.year}-999999", "exists": False, "status": "unknown"}
        bad_number = await town.public.get("/certificates/ZYZM-26-1/verification")
        assert bad_number.status_code == 422
        bad_digest = await town.public.get(
            f"/certificates/ZYZM-{TODAY.year}-000001/verification", params={"digest": "abc"}
        )
        assert bad_digest.status_code == 422 and bad_digest.json()["errors"][0]["field"] == "digest"
        assert (await town.public.get(f"/certificates/ZYZM-{TODAY.year}-000001.pdf")).status_code == 401


async def test_a_records_older_event_arriving_late_changes_nothing(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """Redelivery after a delay can bring a confirmation after the revocation that followed it:
    the record stays revoked, in registry's view as in dispatch's."""
    async with city(nats_url, database_url, tmp_path) as town:
        attribution = {
            "record_id": "R00000777", "volunteer_number": town.volunteer, "activity_id": town.activity,
            "site_id": SITE, "field": "civilised_traffic", "group_served": GroupServed.public_needs,
            "service_date": TODAY - timedelta(days=1), "source": RecordSource.admin_entry,
        }  # fmt: skip
        at = utcnow()
        confirmed = ServiceHoursConfirmed(**attribution, minutes=60, hours="1.00", at=at)
        revoked = ServiceHoursRevoked(**attribution, minutes=60, hours="1.00", reason="not_served", at=at)
        envelopes = [
            catalog.envelope(
                event, aggregate_id="R00000777", aggregate_version=version, org_path=("370303",), actor="t"
            )
            for version, event in ((2, confirmed), (3, revoked))
        ]
        events = town.registry_app.state.registry.events
        for envelope in reversed(envelopes):  # the revocation first
            async with events.transaction() as tx:
                await subscribers.follow_record(tx, envelope, catalog.payload_of(envelope))
        (row,) = (await registry_knows(town, {"R00000777": certificates.REVOKED})).values()
        assert (row["version"], row["event_id"]) == (3, str(envelopes[1].event_id))
        nothing = await town.registry.post(f"/volunteers/{town.volunteer}/certificates", json=period(), headers=STAFF)
        assert nothing.status_code == 409
