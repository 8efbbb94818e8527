"""Posting dispatch's confirmed, adjusted and revoked hours to the ledger, a batch at a time.

Each dispatch event is applied once: the record keeps the last of its versions applied, so a
redelivery or a replay changes nothing twice. An event that cannot be applied yet (the
volunteer's account is not open, or the record's confirmation has not come) waits in its
volunteer's or record's queue and is applied, in order, once it can.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import cast

from sqlalchemy import delete, select

from services.points import ledger, store
from services.points.books import Books, RuleCache, load_day_points, load_records, save_records
from shared.catalog import Event
from shared.citytime import city_date
from shared.db import upsert
from shared.envelope import EventEnvelope, utcnow
from shared.events.dispatch import ServiceHoursAdjusted, ServiceHoursConfirmed, ServiceHoursRevoked
from shared.eventstore import Transaction

SERVICE_EVENTS = (ServiceHoursConfirmed, ServiceHoursAdjusted, ServiceHoursRevoked)
NO_ACCOUNT = "no points account yet"


async def post_service(
    tx: Transaction, items: Sequence[tuple[EventEnvelope, Event]], rule_cache: RuleCache, books: Books | None = None
) -> None:
    """Apply dispatch's hour-bearing events, in the order given, in this transaction."""
    items = [
        (envelope, cast(ledger.ServiceEvent, event)) for envelope, event in items if isinstance(event, SERVICE_EVENTS)
    ]
    if not items:
        return
    rules = await rule_cache.fresh(tx)
    books = books or Books(tx)
    numbers = {event.volunteer_number for _, event in items}
    await books.load(numbers)
    records = await load_records(tx, (event.record_id for _, event in items))
    days = await load_day_points(tx, {(event.volunteer_number, event.service_date) for _, event in items})
    blocked_volunteers, blocked_records = await _waiting(tx, numbers, {event.record_id for _, event in items})
    changed: dict[str, ledger.Record] = {}
    parked: list[dict[str, object]] = []
    city_days: dict[datetime, date] = {}  # the events of a batch share a few instants
    for envelope, event in items:
        number = event.volunteer_number
        record = records.get(event.record_id)
        if record is not None and envelope.aggregate_version <= record.version:
            continue  # applied before: a redelivery or a replay
        reason = None
        if number in blocked_volunteers or number not in books.accounts:
            reason = NO_ACCOUNT
            blocked_volunteers.add(number)
        elif event.record_id in blocked_records and not isinstance(event, ServiceHoursConfirmed):
            # What waits there waits for this record's confirmation; anything else queues behind.
            reason = f"record {event.record_id} has earlier events waiting"
        if reason is None:
            day = (number, event.service_date)
            at = getattr(event, "at", None) or envelope.occurred_at
            credited_on = city_days.get(at) or city_days.setdefault(at, city_date(at))
            try:
                record, posting = ledger.post(
                    books.accounts[number],
                    record,
                    event,
                    envelope.aggregate_version,
                    district_of_service=envelope.district_code,
                    credited_on=credited_on,
                    rules_book=rules.book,
                    day_points=days[day],
                    thresholds=rules.thresholds,
                )
            except ledger.Waits as waits:
                reason = str(waits)
                blocked_records.add(event.record_id)
            else:
                records[record.record_id] = changed[record.record_id] = record
                if posting.day_points_delta:
                    days[day] += posting.day_points_delta
                books.record(number, posting.events, account=number, cause=envelope)
        if reason is not None:
            parked.append(
                {
                    "event_id": str(envelope.event_id),
                    "volunteer_number": number,
                    "record_id": event.record_id,
                    "envelope": envelope.to_json(),
                    "reason": reason,
                    "since": utcnow(),
                }
            )
    await save_records(tx, changed.values())
    if parked:
        await tx.conn.execute(upsert(tx.conn, store.waiting).on_conflict_do_nothing(), parked)
    unblocked = set(changed) & blocked_records
    if unblocked:
        await release_waiting(tx, rule_cache, record_ids=unblocked, books=books)
    # Once a transaction: flush writes the shared balances (issuance, time) in sorted order, and
    # a second flush after them could take them out of order against a concurrent partition's.
    await books.flush()


async def _waiting(tx: Transaction, numbers: set[str], record_ids: set[str]) -> tuple[set[str], set[str]]:
    """Volunteers and records with events already waiting: what follows them waits too."""
    c = store.waiting.c
    if not await tx.conn.scalar(select(c.position).limit(1)):
        return set(), set()  # the usual case: nothing waits anywhere
    rows = await tx.conn.execute(
        select(c.volunteer_number, c.record_id, c.reason).where(
            c.volunteer_number.in_(sorted(numbers)) | c.record_id.in_(sorted(record_ids))
        )
    )
    volunteers, records = set(), set()
    for number, record_id, reason in rows:
        if reason == NO_ACCOUNT:
            volunteers.add(number)
        else:
            records.add(record_id)
    return volunteers, records


async def release_waiting(
    tx: Transaction,
    rule_cache: RuleCache,
    *,
    volunteer: str | None = None,
    record_ids: set[str] | None = None,
    books: Books | None = None,
) -> None:
    """Take a volunteer's (or records') waiting events out of the queue and post them again, in
    the order they came; what still cannot be applied waits again. Into the caller's `books`
    if given (their state is ahead of the tables'; the caller flushes them)."""
    c = store.waiting.c
    condition = c.volunteer_number == volunteer if volunteer else c.record_id.in_(sorted(record_ids or ()))
    rows = (await tx.conn.execute(select(c.position, c.envelope).where(condition).order_by(c.position))).all()
    if not rows:
        return
    await tx.conn.execute(delete(store.waiting).where(c.position.in_([position for position, _ in rows])))
    catalog = tx.catalog
    items = []
    for _, body in rows:
        envelope = catalog.parse_envelope(body)
        items.append((envelope, catalog.payload_of(envelope)))
    await post_service(tx, items, rule_cache, books)
