"""Orders: load the order, let orders.py decide, record the
events and bring the `orders` view along, in one transaction. Each function is plain and can be
called from a test; `now` is the server clock, passed in.

The free text of an order (description, address, the resident's comment) goes into the view
only: events carry no personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from services.dispatch import orders, store
from services.dispatch import suggestions as ranking
from services.dispatch.orders import Order
from shared.catalog import Event
from shared.db import reading
from shared.errors import Conflict
from shared.events.common import AgeBand
from shared.events.dispatch import GroupServed, OrderCompleted, OrderKind, PlacedVia, Urgency
from shared.eventstore import ConcurrencyConflict, EventStore, History, Transaction
from shared.web import Actor

log = logging.getLogger(__name__)

# Who records what the time-out job decides.
TIMEOUT_ACTOR = Actor("system:dispatch")


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
) -> str:
    """Place an order (点单); its id. Dispatch does not know the org tree yet: any 12-digit
    community code is taken, and its district, street and community make the org path."""
    async with events.transaction() as tx:
        # A refusal below rolls the counter back with everything else: no number is lost.
        order_id = await store.next_number(tx.conn, "O")
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


async def _load(tx: Transaction, order_id: str) -> tuple[Order, History]:
    history = await tx.history("order", order_id, "order")
    order = orders.fold(history.payloads)
    assert order is not None
    return order, history


async def load_order(events: EventStore, order_id: str) -> Order:
    order = orders.fold((await events.history("order", order_id, "order")).payloads)
    assert order is not None
    return order


async def _change(
    events: EventStore,
    actor: Actor,
    order_id: str,
    decide: Callable[[Order], list[Event]],
    **view: Any,
) -> Order:
    """Load an order, let the domain decide, record and update the view; the new state. `view`
    holds extra view columns to set when something was decided (e.g. the rating's comment)."""
    async with events.transaction() as tx:
        order, history = await _load(tx, order_id)
        decided = decide(order)
        if not decided:
            return order
        await tx.record(order_id, history.version, decided, org_path=history.org_path, actor=actor.id)
        for event in decided:
            order = orders.evolve(order, event)
            if isinstance(event, OrderCompleted):
                view["completed_at"] = event.at
        table = store.orders
        await tx.conn.execute(update(table).where(table.c.order_id == order_id).values(**_view_values(order), **view))
    return order


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
    return await _change(events, actor, order_id, lambda o: orders.decline(o, by, reason, now))


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
    return await _change(events, actor, order_id, lambda o: orders.rate(o, rating, now), comment=comment)


async def time_out_due(events: EventStore, now: datetime) -> list[str]:
    """Record OrderTimedOut for every dispatched order past its deadline; the ids timed out.
    One transaction per order: an acceptance racing the job wins or loses cleanly."""
    orders.aware(now, "now")
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
            order = await _change(events, TIMEOUT_ACTOR, order_id, lambda o: orders.time_out(o, now))
        except (ConcurrencyConflict, Conflict) as error:
            log.info("order %s not timed out: %s", order_id, error)
            continue
        if order.status == orders.PLACED:
            timed_out.append(order_id)
    return timed_out


def _candidate(row: Any, certifications: dict[str, Any]) -> ranking.Candidate:
    return ranking.Candidate(
        volunteer_number=row["volunteer_number"],
        org_path=tuple(row["org_path"].split("/")),
        skills=frozenset(s for s in row["skills"].split(",") if s),
        certifications=certifications,
        age_band=AgeBand(row["age_band"]),
        status=row["status"],
        # Busy windows, recent load and insurance come with shifts and insurance records.
    )


async def suggestions(
    events: EventStore, order_id: str, now: datetime
) -> tuple[Order, list[ranking.Suggestion], dict[str, list[str]]]:
    """The order, the volunteers who may be sent ranked best first, and those left out with why.

    Only the order's district is read: a city has hundreds of thousands of volunteers, and an
    order is served from its own district. Unverified ones stay in, to be listed with the reason.
    """
    order = await load_order(events, order_id)
    known, certifications = store.volunteers, store.certifications
    district = order.org_path[0]
    in_district = known.c.org_path.like(f"{district}/%")
    async with reading(events.engine) as conn:
        rows = (await conn.execute(select(known).where(in_district).order_by(known.c.volunteer_number))).mappings().all()
        certs: dict[str, dict[str, Any]] = {}
        held = await conn.execute(
            select(certifications.c.volunteer_number, certifications.c.certification, certifications.c.expires_on)
            .join(known, known.c.volunteer_number == certifications.c.volunteer_number)
            .where(in_district)
        )
        for number, name, expires_on in held:
            certs.setdefault(number, {})[name] = expires_on
    candidates = [_candidate(row, certs.get(row["volunteer_number"], {})) for row in rows]
    return order, ranking.rank(order, candidates, now), ranking.excluded(order, candidates, now)
