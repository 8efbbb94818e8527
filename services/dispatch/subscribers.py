"""Dispatch follows registry to know the volunteers it can send: where they live, what they can
do, which certifications and insurance they hold, and whether they may be dispatched at all; and
the practice sites, to know where an order goes when it is escalated one level up.

Dispatch follows points' time bank, to take orders paid with reserved time credits. It also
follows its own check-outs to draw up their service records: off the scan's
transaction, so that a rush of check-outs commits as fast as check-ins, and in batches."""

from __future__ import annotations

from sqlalchemy import select, update

from services.dispatch import domain, store
from services.dispatch.handlers import records
from shared.auth import Actor
from shared.catalog import Event
from shared.db import upsert
from shared.envelope import EventEnvelope
from shared.events import registry as ev
from shared.events.dispatch import VolunteerCheckedOut
from shared.events.points import TimeCreditsReleased, TimeCreditsReserved
from shared.eventstore import EventStore, Transaction
from shared.subscriber import Reactor

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
    for status_event in (ev.VolunteerVerified, ev.VolunteerReactivated, ev.VolunteerSuspended, ev.VolunteerDeregistered):
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


def records_reactor(events: EventStore) -> Reactor:
    drawing_up = Reactor("dispatch-records", events)
    drawing_up.on(VolunteerCheckedOut)(draw_up_record)
    return drawing_up
