"""Attendance: a scan of the shift's rotating code checks a signed-up volunteer in or out; shifts
that have ended are closed, checking out at the end whoever forgot and flagging it. Each check-out
is then drawn up as a service record by dispatch's own subscriber (subscribers.draw_up_record).

Each volunteer's attendance at a shift is its own aggregate ("<shift>.<volunteer>"), so that two
thousand volunteers scanning into one shift never wait on each other's version; and the scans
decided while a write commits are written together in the next transaction (`_ScanBatch`), so
that a rush pays one commit (one fsync, one turn of the write lock) for many scans.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch import activities, attendance, store
from services.dispatch.attendance import Attendance, Shift, ShiftCodes
from shared.auth import Actor
from shared.catalog import Event
from shared.db import is_sqlite, reading, upsert
from shared.errors import Conflict, Invalid, NotFound
from shared.events.dispatch import AttendanceFlagged, Geofence, ShiftPosition, VolunteerCheckedIn, VolunteerCheckedOut
from shared.eventstore import ConcurrencyConflict, EventStore, Transaction, retrying

log = logging.getLogger(__name__)

# Who records what the closing job decides.
CLOSING_ACTOR = Actor("system:dispatch")

CHECKED_IN, CHECKED_OUT, UNCHANGED = "checked_in", "checked_out", "unchanged"


class ScanPace:
    """How many scans this process has begun: what follows the scans (the service records drawn
    up from check-outs) waits while a rush of them is being answered (subscribers.RecordsReactor)."""

    begun = 0


@dataclass(frozen=True)
class ScanResult:
    result: str  # checked_in, checked_out or unchanged
    shift_id: str
    volunteer_number: str
    at: datetime  # of the check-in or check-out in effect
    minutes: int | None = None


def attendance_id(shift_id: str, volunteer_number: str) -> str:
    return f"{shift_id}.{volunteer_number}"


def _shift_of(row: Any) -> Shift:
    fence = row["geofence"]
    return Shift(
        row["shift_id"], row["starts_at"], row["ends_at"], row["capacity"], Geofence(**fence) if fence else None
    )


# A scan's statements, built once (a rush runs them thousands of times a minute, and building
# one costs more CPU than SQLite takes to run it).
_SHIFT_AND_PLACE = (
    select(store.shifts, store.signups.c.position)
    .outerjoin(
        store.signups,
        (store.signups.c.shift_id == store.shifts.c.shift_id)
        & (store.signups.c.volunteer_number == bindparam("volunteer_number")),
    )
    .where(store.shifts.c.shift_id == bindparam("shift_id"))
)
# (An UPDATE's bind names must differ from its columns'.)
_THIS_ATTENDANCE = (store.attendances.c.shift_id == bindparam("this_shift")) & (
    store.attendances.c.volunteer_number == bindparam("this_volunteer")
)
_CHECK_OUT = (
    update(store.attendances)
    .where(_THIS_ATTENDANCE)
    .values(checked_out_at=bindparam("at"), minutes=bindparam("minutes"))
)
_FLAG = update(store.attendances).where(_THIS_ATTENDANCE).values(flag=bindparam("reason"))


async def _signed_up_shift(conn: AsyncConnection, shift_id: str, volunteer_number: str) -> Any:
    """The shift's view row, if the volunteer holds a confirmed place on it; refused otherwise."""
    row = (
        (await conn.execute(_SHIFT_AND_PLACE, {"shift_id": shift_id, "volunteer_number": volunteer_number}))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"unknown shift {shift_id}")
    if row["status"] == activities.CANCELLED:
        raise Conflict(f"shift {shift_id} was cancelled", state="cancelled")
    if row["position"] != ShiftPosition.confirmed:
        state = "waitlisted" if row["position"] == ShiftPosition.waitlisted else "not_signed_up"
        raise Conflict(f"volunteer {volunteer_number} has no confirmed place on shift {shift_id}", state=state)
    return row


async def _record(tx: Transaction, actor: Actor, row: Any, number: str, version: int, decided: list[Event]) -> None:
    """Append the attendance's events and bring its view along (one row per volunteer and shift)."""
    org_path = tuple(row["org_path"].split("/"))
    await tx.record(attendance_id(row["shift_id"], number), version, decided, org_path=org_path, actor=actor.id)
    await _write_view(tx, row["shift_id"], number, decided)


async def _record_scan(
    tx: Transaction, actor: Actor, row: Any, number: str, version: int, decided: list[Event]
) -> None:
    """As `_record`, for a scan written in a batch: the events are appended without looking the
    version up again (a trip to the database with the write lock held, for each check-out). The
    unique aggregate version decides as well: a scan that another took first fails the commit,
    and `retrying` decides it afresh."""
    org_path = tuple(row["org_path"].split("/"))
    envelopes, correlation_id = [], None
    for offset, event in enumerate(decided, start=1):
        envelope = tx.catalog.envelope(
            event, aggregate_id=attendance_id(row["shift_id"], number), aggregate_version=version + offset,
            org_path=org_path, actor=actor.id, correlation_id=correlation_id,
        )  # fmt: skip
        correlation_id = envelope.correlation_id
        envelopes.append(envelope)
    await tx.append_batch(envelopes)
    await _write_view(tx, row["shift_id"], number, decided)


async def _write_view(tx: Transaction, shift_id: str, number: str, decided: list[Event]) -> None:
    this_one = {"this_shift": shift_id, "this_volunteer": number}
    for event in decided:
        match event:
            case VolunteerCheckedIn():
                values = {"shift_id": event.shift_id, "volunteer_number": number, "checked_in_at": event.at}
                await tx.conn.execute(_check_in(tx.conn), values)
            case VolunteerCheckedOut():
                await tx.conn.execute(_CHECK_OUT, {**this_one, "at": event.at, "minutes": event.minutes})
            case AttendanceFlagged():
                await tx.conn.execute(_FLAG, {**this_one, "reason": event.reason})


_CHECK_INS: dict[str, Any] = {}


def _check_in(conn: AsyncConnection) -> Any:
    """The check-in's row, unless there is one (an INSERT … ON CONFLICT of the store's dialect)."""
    dialect = conn.dialect.name
    if dialect not in _CHECK_INS:
        _CHECK_INS[dialect] = upsert(conn, store.attendances).on_conflict_do_nothing()
    return _CHECK_INS[dialect]


async def scan(
    events: EventStore,
    codes: ShiftCodes,
    actor: Actor,
    *,
    code: str,
    volunteer_number: str,
    now: datetime,
    shift_id: str | None = None,
    position: tuple[float, float] | None = None,
) -> ScanResult:
    """A volunteer scanned a shift's code: check in, check out, or nothing (a repeat). With
    `shift_id`, the code must be that shift's (the page the volunteer has open)."""
    ScanPace.begun += 1
    if not isinstance(code, str) or "." not in code:
        raise Invalid("this is not a Beacon shift code", field="code", reason="malformed")
    codes.verify(code, shift_id or code.split(".", 1)[0], now)
    shift_id = code.split(".", 1)[0]

    async def attempt() -> ScanResult:
        # The reads go first, on a read connection: under a rush the write lock (one writer at a
        # time on SQLite) is then held only for the writes. Appending at the version read makes
        # a concurrent scan of the same volunteer a conflict, decided afresh by `retrying`.
        async with reading(events.engine) as conn:
            row = await _signed_up_shift(conn, shift_id, volunteer_number)
            history = await Transaction(conn, events).load("attendance", attendance_id(shift_id, volunteer_number))
        state = attendance.fold((events.catalog.payload_of(e) for e in history), volunteer_number)
        decided = attendance.scan(state, _shift_of(row), volunteer_number, now, position)
        if not decided:
            return _unchanged(shift_id, volunteer_number, state, now)

        def write(tx: Transaction) -> Awaitable[None]:
            return _record_scan(tx, actor, row, volunteer_number, len(history), decided)

        if is_sqlite(events.engine):  # one writer at a time: with the scans decided meanwhile
            await _ScanBatch.write(events, attendance_id(shift_id, volunteer_number), write)
        else:  # writers side by side, each in its own transaction
            async with events.transaction() as tx:
                await write(tx)
        event = decided[0]
        if isinstance(event, VolunteerCheckedIn):
            return ScanResult(CHECKED_IN, shift_id, volunteer_number, event.at)
        assert isinstance(event, VolunteerCheckedOut)
        return ScanResult(CHECKED_OUT, shift_id, volunteer_number, event.at, event.minutes)

    return await retrying(attempt)


class _ScanBatch:
    """Scans written in one transaction on SQLite: those decided while the write before them held
    the store's write lock. The first to come leads: it waits for the transaction (the lock),
    closes the batch, lets every member write its own statements (in its own task, so that its
    events carry its request's correlation id and trace), then commits them all in one trip. A
    failure undoes the whole batch; the members whose write was not the cause decide again (as
    after a concurrent change), the one whose write failed sees its own error."""

    _open: ClassVar[weakref.WeakKeyDictionary[EventStore, _ScanBatch]] = weakref.WeakKeyDictionary()
    # Attendances being written, by the batch writing them: a second scan of one decides again
    # on what the first wrote (two at once would fail their batches at the commit).
    _writing: ClassVar[weakref.WeakKeyDictionary[EventStore, dict[str, _ScanBatch]]] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.attendances: list[str] = []
        self.tx: Transaction | None = None
        self.failed: BaseException | None = None
        self.failed_by: object | None = None  # the member whose write failed; None for the commit
        self.waiting = 0  # members yet to write
        self.one_at_a_time = asyncio.Lock()  # a member's statements are not interleaved with another's
        self.writable = asyncio.Event()  # the transaction is there (or will never be)
        self.all_written = asyncio.Event()
        self.done = asyncio.Event()

    @classmethod
    async def write(cls, events: EventStore, attendance: str, write: Callable[[Transaction], Awaitable[None]]) -> None:
        writing = cls._writing.setdefault(events, {})
        earlier = writing.get(attendance)
        if earlier is not None:
            await earlier.done.wait()
            raise ConcurrencyConflict("attendance", attendance, -1, None)
        batch = cls._open.get(events)
        leads = batch is None
        if batch is None:
            batch = cls._open[events] = _ScanBatch()
        writing[attendance] = batch
        batch.attendances.append(attendance)
        batch.waiting += 1
        member = object()
        if leads:
            await batch._lead(events, member, write)
        else:
            await batch._follow(member, write)

    async def _lead(self, events: EventStore, member: object, write: Callable[[Transaction], Awaitable[None]]) -> None:
        try:
            async with events.transaction(one_trip=True) as tx:
                self._close(events)
                self.tx = tx
                self.writable.set()
                await self._write_own(member, write)
                await self.all_written.wait()
                if self.failed is not None:
                    raise _BatchUndone  # roll back: nothing of the batch is kept
        except _BatchUndone:
            pass
        except BaseException as error:  # noqa: BLE001  (every member is told: see _outcome)
            if self.failed is None:
                self.failed = error
                if isinstance(error, asyncio.CancelledError):
                    self.failed_by = member  # the others decide again
        finally:
            self._close(events)
            writing = self._writing.get(events, {})
            for attendance in self.attendances:
                if writing.get(attendance) is self:
                    del writing[attendance]
            self.writable.set()  # members still waiting for a transaction that never came
            self.done.set()
        self._outcome(member)

    async def _follow(self, member: object, write: Callable[[Transaction], Awaitable[None]]) -> None:
        try:
            await self.writable.wait()
        except BaseException:  # cancelled before writing: the batch goes on without it
            self._written()
            raise
        await self._write_own(member, write)
        await self.done.wait()
        self._outcome(member)

    async def _write_own(self, member: object, write: Callable[[Transaction], Awaitable[None]]) -> None:
        try:
            async with self.one_at_a_time:
                if self.failed is None and self.tx is not None:
                    await write(self.tx)  # statements held back: no trip, no turn of the loop
        except BaseException as error:  # noqa: BLE001  (the batch is undone; see _outcome)
            if self.failed is None:
                self.failed, self.failed_by = error, member
        finally:
            self._written()

    def _written(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_written.set()

    def _outcome(self, member: object) -> None:
        failed = self.failed
        if failed is None:
            return
        if self.failed_by is member or (self.failed_by is None and not isinstance(failed, ConcurrencyConflict)):
            raise failed
        raise ConcurrencyConflict("attendance", "(a scan written with it)", -1, None)

    def _close(self, events: EventStore) -> None:
        if self._open.get(events) is self:
            del self._open[events]


class _BatchUndone(Exception):
    """Rolls a batch back after a member's write failed (that member is told its own error)."""


def _unchanged(shift_id: str, number: str, state: Attendance | None, now: datetime) -> ScanResult:
    if state is None:
        return ScanResult(UNCHANGED, shift_id, number, now)
    at = state.checked_out_at or state.checked_in_at
    return ScanResult(UNCHANGED, shift_id, number, at, state.minutes)


async def close_ended_shifts(events: EventStore, now: datetime) -> list[str]:
    """Close every open shift that has ended: check out at its end, and flag, each volunteer still
    present (one transaction each), then mark the shift closed. The shifts closed."""
    shifts, present = store.shifts, store.attendances
    async with reading(events.engine) as conn:
        ended = (
            (
                await conn.execute(
                    select(shifts.c.shift_id)
                    .where(shifts.c.status == activities.OPEN, shifts.c.ends_at <= now)
                    .order_by(shifts.c.shift_id)
                )
            )
            .scalars()
            .all()
        )
    closed = []
    for shift_id in ended:
        async with reading(events.engine) as conn:
            forgot = (
                (
                    await conn.execute(
                        select(present.c.volunteer_number)
                        .where(present.c.shift_id == shift_id, present.c.checked_out_at.is_(None))
                        .order_by(present.c.volunteer_number)
                    )
                )
                .scalars()
                .all()
            )
        for number in forgot:
            try:
                await _close_one(events, shift_id, number, now)
            except ConcurrencyConflict:
                log.info("attendance %s changed while closing; next round", attendance_id(shift_id, number))
        async with events.transaction() as tx:
            still = await tx.conn.scalar(
                select(present.c.volunteer_number).where(
                    present.c.shift_id == shift_id, present.c.checked_out_at.is_(None)
                )
            )
            if still is None:
                await tx.conn.execute(update(shifts).where(shifts.c.shift_id == shift_id).values(status="closed"))
                closed.append(shift_id)
    return closed


async def _close_one(events: EventStore, shift_id: str, number: str, now: datetime) -> None:
    async with events.transaction() as tx:
        row = (await tx.conn.execute(select(store.shifts).where(store.shifts.c.shift_id == shift_id))).mappings().one()
        history = await tx.load("attendance", attendance_id(shift_id, number))
        state = attendance.fold((events.catalog.payload_of(e) for e in history), number)
        if state is None:
            return
        decided = attendance.close_shift([state], _shift_of(row), now)
        if decided:
            await _record(tx, CLOSING_ACTOR, row, number, len(history), decided)
