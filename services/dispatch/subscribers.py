"""Dispatch follows registry to know the volunteers it can send: where they live, what they can
do, which certifications and insurance they hold, and whether they may be dispatched at all; and
the practice sites, to know where an order goes when it is escalated one level up.

Dispatch follows points' time bank, to take orders paid with reserved time credits. It also
follows its own check-outs to draw up their service records: off the scan's
transaction, so that a rush of check-outs commits as fast as check-ins, and in batches."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch import domain, store
from services.dispatch.handlers import attendance, records
from shared.auth import Actor
from shared.catalog import Event
from shared.db import reading, upsert, write_rows
from shared.envelope import EventEnvelope, utcnow
from shared.events import registry as ev
from shared.events.dispatch import VolunteerCheckedOut
from shared.events.points import TimeCreditsReleased, TimeCreditsReserved
from shared.eventstore import EventStore, Transaction
from shared.subscriber import Reactor, Work

log = logging.getLogger(__name__)

# Who draws up the records of check-outs.
RECORDS_ACTOR = Actor("system:dispatch")


async def remember_volunteer(tx: Transaction, envelope: EventEnvelope, registered: ev.VolunteerRegistered) -> None:
    await store.save_volunteer(tx.conn, domain.known_volunteer(registered, envelope.org_path))


async def follow_status(tx: Transaction, envelope: EventEnvelope, event: Event) -> None:
    status = {
        ev.VolunteerVerified: "verified",
        ev.VolunteerReactivated: "verified",
        ev.VolunteerSuspended: "suspended",
        ev.VolunteerDeregistered: "deregistered",
    }[type(event)]
    await store.change_volunteer(tx.conn, event.volunteer_number, status=status)


async def follow_profile(tx: Transaction, envelope: EventEnvelope, event: ev.VolunteerProfileUpdated) -> None:
    await store.change_volunteer(tx.conn, event.volunteer_number, skills=",".join(event.skills))


async def follow_transfer(tx: Transaction, envelope: EventEnvelope, event: ev.VolunteerTransferred) -> None:
    await store.change_volunteer(
        tx.conn, event.volunteer_number, community_code=event.to_community_code, org_path="/".join(envelope.org_path)
    )


async def follow_certification(tx: Transaction, envelope: EventEnvelope, event: ev.CertificationGranted) -> None:
    await store.certify(tx.conn, event.volunteer_number, event.certification, event.expires_on)


async def follow_expiry(tx: Transaction, envelope: EventEnvelope, event: ev.CertificationExpired) -> None:
    await store.uncertify(tx.conn, event.volunteer_number, event.certification)


async def follow_insurance(tx: Transaction, envelope: EventEnvelope, event: ev.VolunteerInsured) -> None:
    await store.insure(tx.conn, event.volunteer_number, event.valid_from, event.valid_until)


async def remember_site(tx: Transaction, envelope: EventEnvelope, opened: ev.SiteOpened) -> None:
    await store.save_site(tx.conn, opened.site_id, opened.org_unit_code, envelope.org_path, opened.level, opened.kind)


async def follow_site_closing(tx: Transaction, envelope: EventEnvelope, closed: ev.SiteClosed) -> None:
    await store.close_site(tx.conn, closed.site_id)


def reactor(events: EventStore) -> Reactor:
    dispatch = Reactor("dispatch", events)
    dispatch.on(ev.VolunteerRegistered)(remember_volunteer)
    for status_event in (
        ev.VolunteerVerified,
        ev.VolunteerReactivated,
        ev.VolunteerSuspended,
        ev.VolunteerDeregistered,
    ):
        dispatch.on(status_event)(follow_status)
    dispatch.on(ev.VolunteerProfileUpdated)(follow_profile)
    dispatch.on(ev.VolunteerTransferred)(follow_transfer)
    dispatch.on(ev.CertificationGranted)(follow_certification)
    dispatch.on(ev.CertificationExpired)(follow_expiry)
    dispatch.on(ev.VolunteerInsured)(follow_insurance)
    dispatch.on(ev.SiteOpened)(remember_site)
    dispatch.on(ev.SiteClosed)(follow_site_closing)
    return dispatch


async def draw_up_record(tx: Transaction, envelope: EventEnvelope, out: VolunteerCheckedOut) -> None:
    """The service record of a check-out, flagged when the attendance was (a forgotten check-out
    closed at the shift's end: the flag is recorded with the check-out, in the same transaction)."""
    table = store.attendances
    row = (
        await tx.conn.execute(
            select(table.c.checked_in_at, table.c.flag).where(
                table.c.shift_id == out.shift_id, table.c.volunteer_number == out.volunteer_number
            )
        )
    ).one()
    await records.draw_up_from_attendance(
        tx,
        RECORDS_ACTOR,
        shift_id=out.shift_id,
        volunteer_number=out.volunteer_number,
        checked_in_at=row.checked_in_at,
        checked_out_at=out.at,
        minutes=out.minutes,
        flag=row.flag,
    )


async def remember_reservation(tx: Transaction, envelope: EventEnvelope, reserved: TimeCreditsReserved) -> None:
    row = {
        "reservation_id": reserved.reservation_id,
        "volunteer_number": reserved.volunteer_number,
        "beneficiary_number": reserved.beneficiary_number,
        "minutes": reserved.minutes,
        "expires_at": reserved.expires_at,
        "state": "held",
    }
    await tx.conn.execute(upsert(tx.conn, store.time_credit_reservations).values(**row).on_conflict_do_nothing())


async def follow_release(tx: Transaction, envelope: EventEnvelope, released: TimeCreditsReleased) -> None:
    table = store.time_credit_reservations
    await tx.conn.execute(
        update(table).where(table.c.reservation_id == released.reservation_id).values(state="released")
    )


def time_bank_reactor(events: EventStore) -> Reactor:
    """Dispatch follows points' time-credit reservations, to take an order paid with one."""
    time_bank = Reactor("dispatch-time-bank", events)
    time_bank.on(TimeCreditsReserved)(remember_reservation)
    time_bank.on(TimeCreditsReleased)(follow_release)
    return time_bank


class RecordsReactor(Reactor):
    """Draws up the records of check-outs. A batch (a rush of check-outs) goes a few dozen at a
    time, each read first on a read connection, then written in one transaction of two trips
    (the numbers taken, then the writes with the commit): the write lock, which the scans queue
    for, is held neither while a batch reads nor for a trip per statement (it was about ten trips
    a record, each waiting for a turn of the busy event loop), and the event loop answers requests
    between one part and the next. Each record and inbox claim is what `draw_up_record` writes; a
    part that fails (an event claimed or a record drawn up meanwhile, by a redelivery or a
    replica) falls back to `draw_up_record` one at a time, which skips what was claimed before."""

    PART = 25  # check-outs written in one transaction: the write lock is held ~5 ms for them
    # A rush of scans (this many a second or more) is answered first: a batch waits for it to pass,
    # up to MOST_DEFERRED seconds (well within the consumer's ack wait), looking every PACE_SECONDS.
    RUSH_PER_SECOND = 50
    MOST_DEFERRED = 3.0
    PACE_SECONDS = 0.1

    async def apply_batch(self, work: list[Work]) -> None:
        if any(item.handler is not draw_up_record for item in work):
            await super().apply_batch(work)
            return
        await self._after_the_rush()
        for start in range(0, len(work), self.PART):
            await self._draw_up(work[start : start + self.PART])

    async def _after_the_rush(self) -> None:
        """Wait while scans come at a rush's pace (a check-out's record is not needed at once;
        its scan's answer is), but no longer than MOST_DEFERRED."""
        waited = 0.0
        while waited < self.MOST_DEFERRED:
            before = attendance.ScanPace.begun
            await asyncio.sleep(self.PACE_SECONDS)
            waited += self.PACE_SECONDS
            if attendance.ScanPace.begun - before < self.RUSH_PER_SECOND * self.PACE_SECONDS:
                return

    async def _draw_up(self, work: list[Work]) -> None:
        inbox = self.store.schema.inbox
        ids = [str(item.envelope.event_id) for item in work]
        async with reading(self.store.engine) as conn:
            claimed = set(
                await conn.scalars(
                    select(inbox.c.event_id).where(inbox.c.consumer == self.name, inbox.c.event_id.in_(ids))
                )
            )
            fresh = [item for item in work if str(item.envelope.event_id) not in claimed]
            if not fresh:
                return  # all applied before (a redelivery): acknowledged, as `_apply` skips them
            check_outs = await _check_outs(conn, [item.event for item in fresh])
            drafts = await records.draft_records(self.store, conn, check_outs)
        count, now = sum(draft is not None for draft in drafts), utcnow()
        async with self.store.transaction(one_trip=True) as tx:
            numbers = iter(await store.numbers.reserve(tx.conn, "R", count) if count else ())
            rows = []
            for item, draft in zip(fresh, drafts, strict=True):
                with self._handling(item):
                    if draft is not None:
                        rows.append(await records.draw_up_drafted(tx, RECORDS_ACTOR, draft, next(numbers)))
                    log.debug("%s: handled %s %s", self.name, item.envelope.type, item.envelope.event_id)
            await records.insert_records(tx, rows)
            # Plain inserts: a claim taken meanwhile fails the part (then one at a time, which skips it).
            claims = [(self.name, str(item.envelope.event_id), now) for item in fresh]
            await write_rows(tx.conn, inbox, ("consumer", "event_id", "processed_at"), claims)


async def _check_outs(conn: AsyncConnection, outs: list[VolunteerCheckedOut]) -> list[records.CheckOut]:
    """The check-outs with their attendances' check-in times and flags, in one query."""
    table = store.attendances
    pairs = [(out.shift_id, out.volunteer_number) for out in outs]
    rows = {
        (row.shift_id, row.volunteer_number): row
        for row in await conn.execute(
            select(table.c.shift_id, table.c.volunteer_number, table.c.checked_in_at, table.c.flag).where(
                tuple_(table.c.shift_id, table.c.volunteer_number).in_(pairs)
            )
        )
    }
    check_outs = []
    for out in outs:
        row = rows.get((out.shift_id, out.volunteer_number))
        if row is None:  # as `draw_up_record`'s .one() would
            raise LookupError(f"no attendance of {out.volunteer_number} at shift {out.shift_id}")
        check_outs.append(
            records.CheckOut(out.shift_id, out.volunteer_number, row.checked_in_at, out.at, out.minutes, row.flag)
        )
    return check_outs


def records_reactor(events: EventStore) -> Reactor:
    drawing_up = RecordsReactor("dispatch-records", events)
    drawing_up.on(VolunteerCheckedOut)(draw_up_record)
    return drawing_up
