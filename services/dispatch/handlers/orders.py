"""Orders: load the order, let orders.py decide, record the events and bring the `orders` and
`order_assignees` views along, in one transaction. Each function is plain and can be called from
a test; `now` is the server clock, passed in.

When a dispatch goes unanswered (its last addressee declines, or its deadline passes), what
follows by itself (`orders.follow_up`: the next suggested volunteers, or the site one level up)
is decided and recorded in that same transaction, by the system, caused by the decline or the
time-out: nobody can see the order between the two.

The free text of an order (description, address, the resident's comment) goes into the view
only: events carry no personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch import activities, orders, store
from services.dispatch import suggestions as ranking
from services.dispatch.domain import aware
from services.dispatch.orders import Order
from shared.auth import Actor, Role
from shared.catalog import Event
from shared.db import reading, upsert
from shared.envelope import EventEnvelope
from shared.errors import Conflict, Invalid
from shared.events.common import AgeBand, SiteLevel
from shared.events.dispatch import (
    GroupServed,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderKind,
    OrderTaken,
    PlacedVia,
    ShiftPosition,
    Urgency,
)
from shared.eventstore import ConcurrencyConflict, EventStore, History, Transaction

log = logging.getLogger(__name__)

# Who records what dispatch decides by itself: time-outs, re-dispatches, escalations.
SYSTEM = Actor("system:dispatch")

# How far back a volunteer's recent load counts their shifts.
RECENT_LOAD = timedelta(days=30)


def _view_values(order: Order) -> dict[str, Any]:
    return {
        "status": order.status,
        "site_id": order.site_id,
        "attempts": order.attempts,
        "dispatched_at": order.dispatched_at,
        "accepted_at": order.accepted_at,
        "deadline": order.deadline,
        "people_served": order.people_served,
        "rating": order.rating,
        "unanswered_at": order.unanswered_at,
    }


async def place_order(
    events: EventStore,
    actor: Actor,
    *,
    kind: OrderKind,
    group_served: GroupServed,
    field: str,
    community_code: str,
    site_id: str,
    window_start: datetime,
    window_end: datetime,
    headcount: int,
    placed_via: PlacedVia,
    now: datetime,
    description: str = "",
    address: str = "",
    required_skills: Sequence[str] = (),
    required_certifications: Sequence[str] = (),
    min_age_band: AgeBand | None = None,
    max_age_band: AgeBand | None = None,
    urgency: Urgency = Urgency.normal,
    risky: bool = False,
    time_credit_reservation: str | None = None,
) -> str:
    """Place an order (点单); its id. Dispatch does not know the org tree yet: any 12-digit
    community code is taken, and its district, street and community make the org path. An
    order paid with time credits names the reservation points made; it takes it."""
    async with events.transaction() as tx:
        # A refusal below rolls the counter back with everything else: no number is lost.
        order_id = await store.next_number(tx.conn, "O")
        if time_credit_reservation:
            await _take_reservation(tx, actor, time_credit_reservation, order_id, now)
        decided = orders.place(
            order_id,
            kind=kind,
            group_served=group_served,
            field=field,
            community_code=community_code,
            site_id=site_id,
            window_start=window_start,
            window_end=window_end,
            headcount=headcount,
            placed_via=placed_via,
            now=now,
            required_skills=required_skills,
            required_certifications=required_certifications,
            min_age_band=min_age_band,
            max_age_band=max_age_band,
            urgency=urgency,
            risky=risky,
            time_credit_reservation=time_credit_reservation,
        )
        org_path = orders.org_path_of(community_code)
        await tx.record(order_id, 0, decided, org_path=org_path, actor=actor.id)
        order = orders.fold(decided)
        assert order is not None
        await tx.conn.execute(
            store.orders.insert().values(
                order_id=order_id,
                kind=str(kind),
                group_served=str(group_served),
                field=field,
                community_code=community_code,
                org_path="/".join(org_path),
                description=description,
                address=address,
                window_start=window_start,
                window_end=window_end,
                headcount=headcount,
                urgency=str(urgency),
                risky=risky,
                placed_at=now,
                completed_at=None,
                comment=None,
                **_view_values(order),
            )
        )
    return order_id


async def _take_reservation(tx: Transaction, actor: Actor, reservation_id: str, order_id: str, now: datetime) -> None:
    table = store.time_credit_reservations
    row = (await tx.conn.execute(select(table).where(table.c.reservation_id == reservation_id))).mappings().first()
    if row is not None and not await _may_spend(tx, actor, (row["volunteer_number"], row["beneficiary_number"])):
        row = None  # someone else's credits: as unknown as a reservation that does not exist
    if row is None:
        raise Invalid(
            f"unknown reservation {reservation_id} (one just made reaches dispatch within moments: retry)",
            field="time_credit_reservation",
        )
    if row["state"] == "taken":
        raise Conflict(f"reservation {reservation_id} already pays for order {row['order_id']}", state="taken")
    if row["state"] == "released" or row["expires_at"] <= now:
        raise Conflict(f"reservation {reservation_id} has expired or was released", state="released")
    await tx.conn.execute(
        update(table).where(table.c.reservation_id == reservation_id).values(state="taken", order_id=order_id)
    )


async def _may_spend(tx: Transaction, actor: Actor, holders: tuple[str, str]) -> bool:
    """Credits set aside pay for an order placed by the volunteer who set them aside or the
    family member they are for, or by staff who reach either of them."""
    if actor.role is Role.volunteer:
        return any(actor.is_volunteer(number) for number in holders)
    known = store.volunteers.c
    paths = (await tx.conn.execute(select(known.org_path).where(known.volunteer_number.in_(holders)))).scalars()
    return any(actor.reaches(tuple(path.split("/"))) for path in paths)


async def _load(tx: Transaction, order_id: str) -> tuple[Order, History]:
    history = await tx.history("order", order_id, "order")
    order = orders.fold(history.payloads)
    assert order is not None
    return order, history


async def load_order(events: EventStore, order_id: str) -> Order:
    order = orders.fold((await events.history("order", order_id, "order")).payloads)
    assert order is not None
    return order


async def _follow_assignees(conn: AsyncConnection, order: Order, event: Event) -> None:
    """Who serves the order is busy in its window until it is completed or cancelled."""
    table = store.order_assignees
    match event:
        case OrderAccepted(accepted_by=assignee) | OrderTaken(team_id=assignee):
            statement = upsert(conn, table).values(
                order_id=order.order_id,
                assignee=assignee,
                window_start=order.window_start,
                window_end=order.window_end,
                active=True,
            )
            await conn.execute(statement.on_conflict_do_nothing())
        case OrderCompleted() | OrderCancelled():
            await conn.execute(update(table).where(table.c.order_id == order.order_id).values(active=False))


async def _record(
    tx: Transaction, order: Order, org_path: tuple[str, ...], decided: list[Event], actor: Actor, **links: Any
) -> tuple[Order, list[EventEnvelope]]:
    """Append what was decided after the order's last event; the new state."""
    envelopes = await tx.record(order.order_id, order.version, decided, org_path=org_path, actor=actor.id, **links)
    for event in decided:
        order = orders.evolve(order, event)
        await _follow_assignees(tx.conn, order, event)
    return order, envelopes


async def _parent_site(conn: AsyncConnection, site_id: str) -> str | None:
    """The open site one level up from this one, from registry's sites; None when this site or
    the one above is not known here (or it is a centre)."""
    sites = store.sites
    row = (await conn.execute(select(sites.c.level, sites.c.org_unit_code).where(sites.c.site_id == site_id))).first()
    if row is None:
        return None
    above = orders.parent_site_of(SiteLevel(row.level), row.org_unit_code)
    if above is None:
        return None
    level, org_unit_code = above
    return await conn.scalar(
        select(sites.c.site_id)
        .where(sites.c.level == level, sites.c.org_unit_code == org_unit_code, sites.c.open.is_(True))
        .order_by(sites.c.site_id)
        .limit(1)
    )


async def _follow_up(
    tx: Transaction, order: Order, org_path: tuple[str, ...], cause: EventEnvelope, now: datetime
) -> Order:
    """After a decline or a time-out: if the dispatch went unanswered, what follows by itself."""
    if order.status != orders.PLACED or order.unanswered_at is None:
        return order
    ranked: list[str] = []
    if not order.sent_to_team:  # a team's order goes up a level: no volunteers are tried
        ranked = [s.volunteer_number for s in ranking.rank(order, await _candidates(tx.conn, order, now), now)]
    decided = orders.follow_up(order, ranked, await _parent_site(tx.conn, order.site_id), now)
    if not decided:
        return order
    links = {"correlation_id": cause.correlation_id, "causation_id": cause.event_id}
    order, _ = await _record(tx, order, org_path, decided, SYSTEM, **links)
    return order


async def _apply(
    tx: Transaction,
    order: Order,
    history: History,
    decided: list[Event],
    actor: Actor,
    *,
    follow_up_at: datetime | None = None,
    view: dict[str, Any] | None = None,
) -> Order:
    """Record what the domain decided, then (given `follow_up_at`) what follows by itself, and
    update the view; `view` holds extra columns to set (e.g. the rating's comment)."""
    order, envelopes = await _record(tx, order, history.org_path, decided, actor)
    if follow_up_at is not None:
        order = await _follow_up(tx, order, history.org_path, envelopes[-1], follow_up_at)
    extra = dict(view or {})
    for event in decided:
        if isinstance(event, OrderCompleted):
            extra["completed_at"] = event.at
    table = store.orders
    await tx.conn.execute(
        update(table).where(table.c.order_id == order.order_id).values(**_view_values(order), **extra)
    )
    return order


async def _change(
    events: EventStore,
    actor: Actor,
    order_id: str,
    decide: Callable[[Order], list[Event]],
    *,
    follow_up_at: datetime | None = None,
    view: dict[str, Any] | None = None,
) -> Order:
    """Load an order, let the domain decide, record and update the view; the new state."""
    async with events.transaction() as tx:
        order, history = await _load(tx, order_id)
        decided = decide(order)
        if not decided:
            return order
        return await _apply(tx, order, history, decided, actor, follow_up_at=follow_up_at, view=view)


async def dispatch_order(
    events: EventStore,
    actor: Actor,
    order_id: str,
    *,
    site_id: str,
    deadline: datetime,
    now: datetime,
    team_id: str | None = None,
    volunteer_numbers: Sequence[str] = (),
) -> Order:
    return await _change(
        events,
        actor,
        order_id,
        lambda o: orders.dispatch(o, site_id, deadline, now, team_id=team_id, volunteer_numbers=volunteer_numbers),
    )


async def open_for_taking(events: EventStore, actor: Actor, order_id: str, *, site_id: str, now: datetime) -> Order:
    return await _change(events, actor, order_id, lambda o: orders.open_for_taking(o, site_id, now))


async def decline(events: EventStore, actor: Actor, order_id: str, *, by: str, reason: str, now: datetime) -> Order:
    """Decline; when that was the last addressee, the order goes on by itself (see the module)."""
    return await _change(events, actor, order_id, lambda o: orders.decline(o, by, reason, now), follow_up_at=now)


async def accept(events: EventStore, actor: Actor, order_id: str, *, by: str, now: datetime) -> Order:
    return await _change(events, actor, order_id, lambda o: orders.accept(o, by, now))


async def take(events: EventStore, actor: Actor, order_id: str, *, team_id: str, now: datetime) -> Order:
    return await _change(events, actor, order_id, lambda o: orders.take(o, team_id, now))


async def escalate(events: EventStore, actor: Actor, order_id: str, *, to_site_id: str, now: datetime) -> Order:
    return await _change(events, actor, order_id, lambda o: orders.escalate(o, to_site_id, now))


async def cancel(events: EventStore, actor: Actor, order_id: str, *, reason: str, now: datetime) -> Order:
    return await _change(events, actor, order_id, lambda o: orders.cancel(o, reason, now))


async def complete(events: EventStore, actor: Actor, order_id: str, *, people_served: int, now: datetime) -> Order:
    return await _change(events, actor, order_id, lambda o: orders.complete(o, people_served, now))


async def rate(
    events: EventStore, actor: Actor, order_id: str, *, rating: int, comment: str | None = None, now: datetime
) -> Order:
    """The rating is published; the comment is free text and stays in the view."""
    return await _change(events, actor, order_id, lambda o: orders.rate(o, rating, now), view={"comment": comment})


async def time_out_due(events: EventStore, now: datetime) -> list[str]:
    """Record OrderTimedOut for every dispatched order past its deadline, and what follows by
    itself; the ids timed out. One transaction per order: an acceptance racing the job wins or
    loses cleanly."""
    aware(now, "now")
    table = store.orders
    async with reading(events.engine) as conn:
        due = (
            await conn.execute(
                select(table.c.order_id)
                .where(table.c.status == orders.DISPATCHED, table.c.deadline <= now)
                .order_by(table.c.order_id)
            )
        ).scalars().all()
    timed_out = []
    for order_id in due:
        try:
            async with events.transaction() as tx:
                order, history = await _load(tx, order_id)
                decided = orders.time_out(order, now)
                if decided:
                    await _apply(tx, order, history, decided, SYSTEM, follow_up_at=now)
        except (ConcurrencyConflict, Conflict) as error:
            log.info("order %s not timed out: %s", order_id, error)
            continue
        if decided:
            timed_out.append(order_id)
    return timed_out


def _candidate(row: Any, certifications: dict[str, Any], **known: Any) -> ranking.Candidate:
    return ranking.Candidate(
        volunteer_number=row["volunteer_number"],
        org_path=tuple(row["org_path"].split("/")),
        skills=frozenset(s for s in row["skills"].split(",") if s),
        certifications=certifications,
        age_band=AgeBand(row["age_band"]),
        status=row["status"],
        **known,
    )


async def _candidates(conn: AsyncConnection, order: Order, now: datetime) -> list[ranking.Candidate]:
    """The volunteers of the order's district, with what ranking needs to know of each.

    Only the order's district is read: a city has hundreds of thousands of volunteers, and an
    order is served from its own district. Unverified ones stay in, to be listed with the reason.
    Busy windows are read only where they overlap the order's: no other can exclude anyone.
    """
    known = store.volunteers
    number = known.c.volunteer_number
    in_district = known.c.org_path.like(f"{order.org_path[0]}/%")
    overlapping = (order.window_start, order.window_end)

    rows = (await conn.execute(select(known).where(in_district).order_by(number))).mappings().all()
    certs: dict[str, dict[str, Any]] = {}
    c = store.certifications
    held = await conn.execute(
        select(c.c.volunteer_number, c.c.certification, c.c.expires_on)
        .join(known, number == c.c.volunteer_number)
        .where(in_district)
    )
    for volunteer, name, expires_on in held:
        certs.setdefault(volunteer, {})[name] = expires_on

    busy: dict[str, list[tuple[datetime, datetime]]] = {}
    shifts, signups = store.shifts, store.signups
    confirmed = await conn.execute(
        select(signups.c.volunteer_number, shifts.c.starts_at, shifts.c.ends_at)
        .join(shifts, shifts.c.shift_id == signups.c.shift_id)
        .join(known, number == signups.c.volunteer_number)
        .where(
            in_district,
            signups.c.position == ShiftPosition.confirmed,
            shifts.c.status == activities.OPEN,
            shifts.c.starts_at < overlapping[1],
            shifts.c.ends_at > overlapping[0],
        )
    )
    a = store.order_assignees
    serving = await conn.execute(
        select(a.c.assignee, a.c.window_start, a.c.window_end)
        .join(known, number == a.c.assignee)
        .where(
            in_district,
            a.c.active.is_(True),
            a.c.order_id != order.order_id,
            a.c.window_start < overlapping[1],
            a.c.window_end > overlapping[0],
        )
    )
    for volunteer, start, end in [*confirmed, *serving]:
        busy.setdefault(volunteer, []).append((start, end))

    t = store.attendances
    load = dict(
        (
            await conn.execute(
                select(t.c.volunteer_number, func.count())
                .join(known, number == t.c.volunteer_number)
                .where(in_district, t.c.checked_in_at >= now - RECENT_LOAD)
                .group_by(t.c.volunteer_number)
            )
        ).all()
    )

    insurance: dict[str, list[tuple[Any, Any]]] = {}
    i = store.insurance
    records = await conn.execute(
        select(i.c.volunteer_number, i.c.valid_from, i.c.valid_until)
        .join(known, number == i.c.volunteer_number)
        .where(in_district)
    )
    for volunteer, valid_from, valid_until in records:
        insurance.setdefault(volunteer, []).append((valid_from, valid_until))

    return [
        _candidate(
            row,
            certs.get(row["volunteer_number"], {}),
            busy=tuple(sorted(busy.get(row["volunteer_number"], ()))),
            recent_load=load.get(row["volunteer_number"], 0),
            insured=ranking.covered(order, insurance.get(row["volunteer_number"], ())),
        )
        for row in rows
    ]


async def suggestions(
    events: EventStore, order_id: str, now: datetime
) -> tuple[Order, list[ranking.Suggestion], dict[str, list[str]]]:
    """The order, the volunteers who may be sent ranked best first, and those left out with why."""
    order = await load_order(events, order_id)
    async with reading(events.engine) as conn:
        candidates = await _candidates(conn, order, now)
    return order, ranking.rank(order, candidates, now), ranking.excluded(order, candidates, now)
