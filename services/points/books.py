"""The ledger's state in the store: load the accounts a transaction touches, let the pure rules
change them, then write back the accounts, their lots, the events and the journal at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, func, select

from services.points import store
from services.points.ledger import Account, Record
from services.points.rules import DEFAULT_STAR_THRESHOLDS, RuleBook
from shared.catalog import Event
from shared.db import fetch_in, is_sqlite, update_rows, write_rows
from shared.envelope import EventEnvelope, utcnow
from shared.errors import NotFound
from shared.events.points import (
    CITY,
    PointsExpired,
    PointsRuleSet,
    RedemptionCancelled,
    RedemptionHandedOver,
    RedemptionReserved,
    ServiceCredited,
    ServiceDebited,
    TimeCreditsReleased,
    TimeCreditsReserved,
    TimeCreditsSpent,
    TimeCreditsTransferred,
)
from shared.eventstore import EncodedEvent, Transaction, encode

ACTOR = "system:points"
POINTS, MINUTES = "points", "minutes"

Movement = tuple[str, str, str, int]  # from account, to account, unit, amount


def movements(event: Event, account_district: str) -> list[Movement]:
    """The double-entry movements an event of points records (see shared/events/points.py)."""
    match event:
        case ServiceCredited():
            return [
                (f"issuance:{event.service_district}", f"volunteer:{event.volunteer_number}", POINTS, event.points),
                (
                    f"time-issuance:{CITY}",
                    f"volunteer-time:{event.volunteer_number}",
                    MINUTES,
                    event.time_credit_minutes,
                ),
            ]
        case ServiceDebited():
            return [
                (f"volunteer:{event.volunteer_number}", f"issuance:{event.service_district}", POINTS, event.points),
                (
                    f"volunteer-time:{event.volunteer_number}",
                    f"time-issuance:{CITY}",
                    MINUTES,
                    event.time_credit_minutes,
                ),
            ]
        case PointsExpired():
            return [(f"volunteer:{event.volunteer_number}", f"expiry:{account_district}", POINTS, event.points)]
        case RedemptionReserved():
            return [(f"volunteer:{event.volunteer_number}", f"shop-held:{event.site_id}", POINTS, event.points)]
        case RedemptionHandedOver():
            return [(f"shop-held:{event.site_id}", f"shop:{event.site_id}", POINTS, event.points)]
        case RedemptionCancelled():
            return [(f"shop-held:{event.site_id}", f"volunteer:{event.volunteer_number}", POINTS, event.points)]
        case TimeCreditsTransferred():
            return [
                (
                    f"volunteer-time:{event.volunteer_number}",
                    f"volunteer-time:{event.member_number}",
                    MINUTES,
                    event.minutes,
                )
            ]
        case TimeCreditsReserved():
            return [(f"volunteer-time:{event.volunteer_number}", f"time-held:{CITY}", MINUTES, event.minutes)]
        case TimeCreditsSpent():
            return [(f"time-held:{CITY}", f"time-spent:{CITY}", MINUTES, event.minutes)]
        case TimeCreditsReleased():
            return [(f"time-held:{CITY}", f"volunteer-time:{event.volunteer_number}", MINUTES, event.minutes)]
    return []


_OWN = ("volunteer:", "volunteer-time:")  # a volunteer's own accounts: their balances are in `accounts`


class Books:
    """One transaction's view of the ledger. Accounts are read once (locked on PostgreSQL, so a
    concurrent redemption and a credit queue instead of overwriting each other), changed in
    memory, and written back by `flush` with the events and journal rows that explain them.

    A row lock cannot hold an account that does not exist yet, so an account found missing is
    held by its advisory lock (`lock`) and read again, as registry's event opening it takes the
    same lock first: under READ COMMITTED the ledger parking hours for lack of the account and
    the opening that releases what is parked would otherwise miss each other's writes, and the
    hours would wait for good. Only missing ones: advisory locks fill PostgreSQL's shared lock
    table (64 a connection by default), which a thousand-event batch's accounts would not fit."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.accounts: dict[str, Account] = {}
        self.versions: dict[str, int] = {}
        self.org_paths: dict[str, tuple[str, ...]] = {}
        self._changed: set[str] = set()
        self._opened: set[str] = set()
        self._locked: set[str] = set()  # accounts this transaction holds by their advisory lock
        self._stored_lots: dict[str, dict[date | None, int]] = {}  # as loaded: flush writes the difference
        self._events: list[EncodedEvent] = []
        self._journal: list[tuple[str, str, str, str, int]] = []
        self.now = utcnow()  # when this transaction's events occur
        self._balances: defaultdict[tuple[str, str], int] = defaultdict(int)

    async def load(self, numbers: Iterable[str]) -> None:
        wanted = sorted(set(numbers) - set(self.accounts))
        if not wanted:
            return
        conn, keys = self.tx.conn, [(number,) for number in wanted]
        # FOR UPDATE on PostgreSQL (SQLite leaves it out: its one writer already queues).
        rows = await fetch_in(conn, store.accounts, _ACCOUNT, ("volunteer_number",), keys, for_update=True)
        if len(rows) < len(wanted) and not is_sqlite(conn):
            found = {row[0] for row in rows}
            missing = [number for number in wanted if number not in found and number not in self._locked]
            if missing:
                await self.lock(missing)
                again = [(number,) for number in missing]
                rows += await fetch_in(conn, store.accounts, _ACCOUNT, ("volunteer_number",), again, for_update=True)
        for number, district, org_path, version, debt, hours, minutes, time_debt, stars in rows:
            self.accounts[number] = Account(number, district, {}, debt, hours, minutes, time_debt, stars)
            self.versions[number] = version
            self.org_paths[number] = tuple(org_path.split("/"))
        lots = await fetch_in(conn, store.point_lots, _LOT, ("volunteer_number",), keys)
        for number, expires, points in lots:
            self.accounts[number].lots[None if expires == store.NEVER else expires] = points
        for number in wanted:
            if number in self.accounts:
                self._stored_lots[number] = dict(self.accounts[number].lots)

    async def lock(self, numbers: Iterable[str]) -> None:
        """Hold these volunteers' accounts, open or not yet, until the transaction ends (on
        PostgreSQL; SQLite's one writer already queues). Before reading them, all at once."""
        new = set(numbers) - self._locked
        await self.tx.lock("account", *new)
        self._locked |= new

    async def account(self, number: str) -> Account:
        await self.load([number])
        if number not in self.accounts:
            raise NotFound(f"volunteer {number} has no points account", field="volunteer_number")
        return self.accounts[number]

    def open(self, number: str, district_code: str, org_path: tuple[str, ...]) -> Account:
        """A new account, written with the rest at `flush` (its first event must be recorded)."""
        self.accounts[number] = Account(number, district_code)
        self.versions[number] = 0
        self.org_paths[number] = org_path
        self._changed.add(number)
        self._opened.add(number)
        return self.accounts[number]

    def touch(self, number: str) -> None:
        """The account's state changed by another aggregate's event (a redemption): write it back."""
        self._changed.add(number)

    def record(
        self,
        aggregate_id: str,
        events: Sequence[Event],
        *,
        account: str | None,
        org_path: tuple[str, ...] | None = None,
        version: int | None = None,
        cause: EventEnvelope | None = None,
        actor: str = ACTOR,
    ) -> list[EncodedEvent]:
        """Envelope `events` of one aggregate: of `account` (a volunteer number), whose version
        is tracked here, or of another aggregate at `version`. Their movements go to the journal."""
        if not events:
            return []
        if account is not None:
            version = self.versions[account]
            org_path = self.org_paths[account]
            self._changed.add(account)
        assert version is not None and org_path is not None
        catalog = self.tx.catalog
        recorded = []
        correlation = cause.correlation_id if cause else None
        for event in events:
            version += 1
            encoded = encode(
                catalog,
                event,
                aggregate_id=aggregate_id,
                aggregate_version=version,
                org_path=org_path,
                actor=actor,
                at=self.now,
                correlation_id=correlation,
                causation_id=cause.event_id if cause else None,
            )
            correlation = encoded.correlation_id
            recorded.append(encoded)
            self._post(encoded.event_id, event, org_path[0])
        if account is not None:
            self.versions[account] = version
        self._events.extend(recorded)
        return recorded

    def _post(self, event_id: str, event: Event, district: str) -> None:
        balances = self._balances
        for source, target, unit, amount in movements(event, district):
            if not amount:
                continue
            self._journal.append((event_id, source, target, unit, amount))
            if not source.startswith(_OWN):
                balances[(source, unit)] -= amount
            if not target.startswith(_OWN):
                balances[(target, unit)] += amount

    async def flush(self) -> None:
        conn = self.tx.conn
        await self.tx.append_batch(self._events)
        opened = self._opened
        if opened:
            await conn.execute(
                store.accounts.insert(),
                [self._row(n) | {"opened_at": utcnow()} for n in sorted(opened)],
            )
        updated = sorted(self._changed - opened)
        await update_rows(conn, store.accounts, ("volunteer_number",), _STATE, [(*self._state(n), n) for n in updated])
        await self._write_lots(sorted(self._changed))
        await write_rows(conn, store.journal, _JOURNAL, self._journal)
        balances = [(a, u, b) for (a, u), b in sorted(self._balances.items())]
        await write_rows(conn, store.ledger_accounts, _BALANCE, balances, on_conflict=_BALANCE[:2], add=_BALANCE[2:])
        self._changed.clear()
        self._events.clear()
        self._journal.clear()
        self._balances.clear()
        self._opened = set()

    async def _write_lots(self, numbers: list[str]) -> None:
        """Write the lots that changed since they were loaded, and delete the spent ones."""
        upserts, deletes = [], []
        for number in numbers:
            stored = self._stored_lots.get(number, {})
            current = self.accounts[number].lots
            for expires, points in current.items():
                if stored.get(expires) != points:
                    upserts.append((number, expires or store.NEVER, points))
            deletes.extend(
                {"number": number, "expires": expires or store.NEVER} for expires in stored if expires not in current
            )
            self._stored_lots[number] = dict(current)
        conn, c = self.tx.conn, store.point_lots.c
        if deletes:
            await conn.execute(
                store.point_lots.delete().where(
                    c.volunteer_number == bindparam("number"), c.expires_on == bindparam("expires")
                ),
                deletes,
            )
        await write_rows(
            conn, store.point_lots, ("volunteer_number", "expires_on", "points"), upserts,
            on_conflict=("volunteer_number", "expires_on"), replace=("points",),
        )  # fmt: skip

    def _state(self, number: str) -> tuple[object, ...]:
        """The account's columns in `_STATE` order."""
        account = self.accounts[number]
        return (
            self.versions[number], account.balance, account.debt, account.hours, account.time_minutes,
            account.time_debt, account.star_level,
        )  # fmt: skip

    def _row(self, number: str) -> dict[str, object]:
        account = self.accounts[number]
        return {
            "volunteer_number": number,
            "district_code": account.district_code,
            "org_path": "/".join(self.org_paths[number]),
        } | dict(zip(_STATE, self._state(number), strict=True))


_ACCOUNT = (
    "volunteer_number", "district_code", "org_path", "version", "debt", "hours", "time_minutes", "time_debt",
    "star_level",
)  # fmt: skip
_LOT = ("volunteer_number", "expires_on", "points")
_STATE = ("version", "balance", "debt", "hours", "time_minutes", "time_debt", "star_level")
_BALANCE = ("account", "unit", "balance")
_JOURNAL = ("event_id", "from_account", "to_account", "unit", "amount")


async def load_records(tx: Transaction, record_ids: Iterable[str]) -> dict[str, Record]:
    keys = [(record_id,) for record_id in sorted(set(record_ids))]
    rows = await fetch_in(tx.conn, store.service_records, _RECORD, ("record_id",), keys)
    return {row[0]: Record(*row) for row in rows}


async def save_records(tx: Transaction, records: Iterable[Record]) -> None:
    rows = [
        (
            r.record_id, r.volunteer_number, r.service_district, r.service_date, r.field, r.group_served, r.source,
            r.rule_version, r.version, r.hours, r.points, r.minutes,
        )
        for r in records
    ]  # fmt: skip
    await write_rows(
        tx.conn, store.service_records, _RECORD, rows, on_conflict=("record_id",),
        replace=("version", "hours", "points", "minutes"),
    )  # fmt: skip


_RECORD = (
    "record_id", "volunteer_number", "service_district", "service_date", "field", "group_served", "source",
    "rule_version", "version", "hours", "points", "minutes",
)  # fmt: skip
_DAY = ("volunteer_number", "service_date")


async def load_day_points(tx: Transaction, keys: Iterable[tuple[str, date]]) -> defaultdict[tuple[str, date], int]:
    """Points each volunteer earned for service on each day (for the daily cap), 0 for a day
    with none: their records' points, as a record's points are what it earned, capped (read
    from the index alone)."""
    columns = (*_DAY, "points")
    rows = await fetch_in(tx.conn, store.service_records, columns, _DAY, sorted(set(keys)), chunk=400)
    totals: defaultdict[tuple[str, date], int] = defaultdict(int)
    for number, day, points in rows:
        totals[number, day] += points
    return totals


class RuleCache:
    """Rules and star thresholds change rarely and only by appending: reload when the count or
    the thresholds' version moved (one small query per batch, not a read of every rule)."""

    def __init__(self) -> None:
        self._stamp: tuple[int, int] | None = None
        self.book = RuleBook()
        self.thresholds: tuple[Decimal, ...] = DEFAULT_STAR_THRESHOLDS

    async def fresh(self, tx: Transaction) -> RuleCache:
        conn = tx.conn
        count = await conn.scalar(select(func.count()).select_from(store.points_rules)) or 0
        thresholds_version = await conn.scalar(select(store.star_thresholds.c.version)) or 0
        if self._stamp != (count, thresholds_version):
            book = RuleBook()
            rows = await conn.execute(
                select(store.points_rules.c.rule).order_by(
                    store.points_rules.c.district_code, store.points_rules.c.version
                )
            )
            for (rule,) in rows:
                book.add(PointsRuleSet.model_validate(rule))
            hours = await conn.scalar(select(store.star_thresholds.c.hours))
            self.book = book
            self.thresholds = tuple(Decimal(str(h)) for h in hours) if hours else DEFAULT_STAR_THRESHOLDS
            self._stamp = (count, thresholds_version)
        return self
