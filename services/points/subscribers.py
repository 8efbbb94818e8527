"""Points follows registry, to open an account for each volunteer and to know the practice
sites that run shops; and dispatch's service records, whose confirmed, adjusted and revoked hours
it posts to the ledger, in stream order, a batch per transaction (see posting.py)."""

from __future__ import annotations

from sqlalchemy import update

from services.points import store, timebank
from services.points.books import ACTOR, Books, RuleCache
from services.points.posting import SERVICE_EVENTS, post_service, release_waiting
from shared.db import upsert
from shared.envelope import EventEnvelope
from shared.events import registry as ev
from shared.events.points import PointsAccountOpened
from shared.eventstore import EventStore, Transaction
from shared.replay import StreamFollower
from shared.subscriber import Reactor

# Only the service-record (and order) events of dispatch's stream, filtered by the server.
SERVICE_RECORD_SUBJECT = "dispatch.*.service_record.>"
ORDER_SUBJECT = "dispatch.*.order.>"


def registry_reactor(event_store: EventStore, rule_cache: RuleCache) -> Reactor:
    points = Reactor("points", event_store)

    @points.on(ev.VolunteerRegistered)
    async def open_account(tx: Transaction, envelope: EventEnvelope, registered: ev.VolunteerRegistered) -> None:
        number = registered.volunteer_number
        books = Books(tx)
        await books.load([number])
        if number in books.accounts:
            return  # opened already (a second registration event opens nothing)
        books.open(number, envelope.district_code, envelope.org_path)
        books.record(
            number, [PointsAccountOpened(volunteer_number=number)], account=number, cause=envelope, actor=ACTOR
        )
        await books.flush()
        await release_waiting(tx, rule_cache, volunteer=number)

    @points.on(ev.VolunteerTransferred)
    async def follow_transfer(tx: Transaction, envelope: EventEnvelope, event: ev.VolunteerTransferred) -> None:
        # The account's later events go to the new district; what it earned stays where it was.
        await tx.conn.execute(
            update(store.accounts)
            .where(store.accounts.c.volunteer_number == event.volunteer_number)
            .values(district_code=envelope.district_code, org_path="/".join(envelope.org_path))
        )

    @points.on(ev.SiteOpened)
    async def remember_site(tx: Transaction, envelope: EventEnvelope, event: ev.SiteOpened) -> None:
        row = {
            "site_id": event.site_id,
            "district_code": envelope.district_code,
            "org_path": "/".join(envelope.org_path),
        }
        statement = upsert(tx.conn, store.known_sites).values(**row, open=1)
        await tx.conn.execute(statement.on_conflict_do_update(index_elements=["site_id"], set_=row | {"open": 1}))

    @points.on(ev.SiteClosed)
    async def forget_site(tx: Transaction, envelope: EventEnvelope, event: ev.SiteClosed) -> None:
        await tx.conn.execute(
            update(store.known_sites).where(store.known_sites.c.site_id == event.site_id).values(open=0)
        )

    return points


# Events per ledger transaction while catching up (live, a batch is what came in 50 ms). Larger
# batches cost SQLite a fifth less an event (4,000: the same account and index pages written once
# for more events) but an apply then outlasts read_stream's 6 s silence check on a loaded machine.
LEDGER_BATCH = 1000


def ledger_follower(event_store: EventStore, rule_cache: RuleCache, batch_size: int = LEDGER_BATCH) -> StreamFollower:
    names = {model.spec.name for model in SERVICE_EVENTS}

    async def apply(tx: Transaction, events: list) -> None:
        await post_service(tx, events, rule_cache)

    return StreamFollower(
        "points-ledger",
        event_store,
        apply,
        subject=SERVICE_RECORD_SUBJECT,
        handles=names.__contains__,
        batch_size=batch_size,
    )


def orders_follower(event_store: EventStore) -> StreamFollower:
    """Orders paid with time credits: placed takes the reservation, completed spends it,
    cancelled returns it (timebank.follow_orders)."""
    names = {model.spec.name for model in timebank.ORDER_EVENTS}
    return StreamFollower(
        "points-orders",
        event_store,
        timebank.follow_orders,
        subject=ORDER_SUBJECT,
        handles=names.__contains__,
    )
