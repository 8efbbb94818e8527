"""Points under test: its store, dispatch's service-record events as dispatch would publish them,
and the ledger's state read back and rebuilt from points' own events."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.points import ledger, store
from services.points.books import POINTS, RuleCache, movements
from services.points.posting import post_service
from services.points.subscribers import registry_reactor
from shared.catalog import catalog
from shared.citytime import city_date
from shared.db import make_engine
from shared.envelope import EventEnvelope
from shared.events.dispatch import RecordSource, ServiceHoursAdjusted, ServiceHoursConfirmed, ServiceHoursRevoked
from shared.events.registry import SiteOpened, VolunteerRegistered
from shared.eventstore import EventStore
from tests.factories import DISTRICT, PATH, registered

SERVICE_PATH = PATH


def points_store(database_url: str) -> EventStore:
    return EventStore(make_engine(database_url), store.schema)


@dataclass
class DispatchRecords:
    """Dispatch's side: service records and the events their confirmations make."""

    district: str = DISTRICT
    versions: dict[str, int] = field(default_factory=dict)
    hours: dict[str, Decimal] = field(default_factory=dict)
    attributes: dict[str, tuple] = field(default_factory=dict)
    count: int = 0

    def new_id(self) -> str:
        self.count += 1
        return f"R{self.count:08d}"

    def _envelope(self, record_id: str, event: Any) -> EventEnvelope:
        # Version 1 is dispatch's ServiceRecorded, which points does not follow.
        self.versions[record_id] = self.versions.get(record_id, 1) + 1
        path = (self.district, *SERVICE_PATH[1:])
        return catalog.envelope(
            event, aggregate_id=record_id, aggregate_version=self.versions[record_id], org_path=path, actor="organiser-1"
        )

    def _common(self, record_id: str, volunteer: str, day: date, source: RecordSource, field_: str, group: str) -> dict:
        return dict(
            record_id=record_id,
            volunteer_number=volunteer,
            activity_id="A00000001",
            shift_id=None if source == RecordSource.admin_entry else "SH00000001",
            site_id="S-370303001001",
            field=field_,
            group_served=group,
            service_date=day,
            source=source,
        )

    def confirm(
        self,
        volunteer: str,
        hours: Decimal,
        at: datetime,
        *,
        day: date | None = None,
        source: RecordSource = RecordSource.attendance,
        field_: str = "smart_help_for_elderly",
        group: str = "elderly",
        record_id: str | None = None,
    ) -> tuple[EventEnvelope, ServiceHoursConfirmed]:
        record_id = record_id or self.new_id()
        event = ServiceHoursConfirmed(
            **self._common(record_id, volunteer, day or city_date(at), source, field_, group),
            minutes=int(hours * 60),
            hours=hours,
            at=at,
        )
        self.hours[record_id] = hours
        self.attributes[record_id] = (volunteer, day or city_date(at), source, field_, group)
        return self._envelope(record_id, event), event

    def adjust(self, record_id: str, hours: Decimal, at: datetime) -> tuple[EventEnvelope, ServiceHoursAdjusted]:
        volunteer, day, source, field_, group = self.attributes[record_id]
        previous = self.hours[record_id]
        event = ServiceHoursAdjusted(
            **self._common(record_id, volunteer, day, source, field_, group),
            previous_minutes=int(previous * 60),
            previous_hours=previous,
            minutes=int(hours * 60),
            hours=hours,
            reason="recount",
            at=at,
        )
        self.hours[record_id] = hours
        return self._envelope(record_id, event), event

    def revoke(self, record_id: str, at: datetime) -> tuple[EventEnvelope, ServiceHoursRevoked]:
        volunteer, day, source, field_, group = self.attributes[record_id]
        hours = self.hours[record_id]
        event = ServiceHoursRevoked(
            **self._common(record_id, volunteer, day, source, field_, group),
            minutes=int(hours * 60),
            hours=hours,
            reason="not_served",
            at=at,
        )
        self.hours[record_id] = Decimal(0)
        return self._envelope(record_id, event), event


async def post(events: EventStore, rule_cache: RuleCache, *items: tuple[EventEnvelope, Any]) -> None:
    async with events.transaction() as tx:
        await post_service(tx, list(items), rule_cache)


async def open_account(events: EventStore, rule_cache: RuleCache, n: int) -> str:
    """As registry's VolunteerRegistered would, through points' own reactor handler."""
    handler = registry_reactor(events, rule_cache).handlers[VolunteerRegistered.spec.name]
    event = registered(n)
    envelope = catalog.envelope(event, aggregate_id=event.volunteer_number, aggregate_version=1, org_path=SERVICE_PATH, actor="staff")
    async with events.transaction() as tx:
        await handler(tx, envelope, event)
    return event.volunteer_number


async def open_site(events: EventStore, rule_cache: RuleCache, site_id: str = "S-370303001001") -> str:
    handler = registry_reactor(events, rule_cache).handlers[SiteOpened.spec.name]
    event = SiteOpened(
        site_id=site_id, org_unit_code=SERVICE_PATH[-1], level="station", kind="community", name="站", opened_on=date(2026, 1, 1)
    )
    envelope = catalog.envelope(event, aggregate_id=site_id, aggregate_version=1, org_path=SERVICE_PATH, actor="staff")
    async with events.transaction() as tx:
        await handler(tx, envelope, event)
    return site_id


@dataclass
class Books:
    """The ledger as stored: accounts, non-volunteer balances, the journal and points' events."""

    accounts: dict[str, ledger.Account]
    balances: dict[tuple[str, str], int]
    journal_balances: dict[tuple[str, str], int]
    events: list[EventEnvelope]


async def read_books(events: EventStore) -> Books:
    async with events.engine.connect() as conn:
        accounts: dict[str, ledger.Account] = {}
        for row in (await conn.execute(select(store.accounts))).mappings():
            accounts[row["volunteer_number"]] = ledger.Account(
                row["volunteer_number"], row["district_code"], {}, row["debt"], Decimal(row["hours"]),
                row["time_minutes"], row["time_debt"], row["star_level"],
            )  # fmt: skip
        for number, expires, points in await conn.execute(select(store.point_lots)):
            accounts[number].lots[None if expires == store.NEVER else expires] = points
        stored_balance = dict(
            (r.volunteer_number, r.balance) for r in await conn.execute(select(store.accounts.c.volunteer_number, store.accounts.c.balance))
        )
        for number, account in accounts.items():
            assert stored_balance[number] == account.balance, f"{number}: stored balance is not lots minus debt"
        balances = {(a, u): b for a, u, b in await conn.execute(select(store.ledger_accounts))}
        journal: defaultdict[tuple[str, str], int] = defaultdict(int)
        for source, target, unit, amount in await conn.execute(
            select(store.journal.c.from_account, store.journal.c.to_account, store.journal.c.unit, store.journal.c.amount)
        ):
            journal[(source, unit)] -= amount
            journal[(target, unit)] += amount
        rows = await conn.execute(select(store.schema.events.c.envelope).order_by(store.schema.events.c.position))
        envelopes = [EventEnvelope.model_validate_json(body) for (body,) in rows]
    return Books(accounts, balances, dict(journal), envelopes)


def rebuild(envelopes: list[EventEnvelope]) -> tuple[dict[str, ledger.Account], dict[tuple[str, str], int]]:
    """The ledger folded from points' events alone, and the balances their movements give."""
    accounts: dict[str, ledger.Account] = {}
    balances: defaultdict[tuple[str, str], int] = defaultdict(int)
    for envelope in envelopes:
        event = catalog.payload_of(envelope)
        if envelope.type == "PointsAccountOpened":
            accounts[event.volunteer_number] = ledger.Account(event.volunteer_number, envelope.district_code)
            continue
        ledger.fold(accounts, event)
        for source, target, unit, amount in movements(event, envelope.district_code):
            balances[(source, unit)] -= amount
            balances[(target, unit)] += amount
    return accounts, {k: v for k, v in balances.items() if v}


def volunteer_balance(books: Books, number: str, unit: str = POINTS) -> int:
    account = books.accounts[number]
    return account.balance if unit == POINTS else account.time_balance
