"""Points follows registry, to open an account for each volunteer and to know the practice
sites that run shops; and dispatch's service records, whose confirmed, adjusted and revoked hours
it posts to the ledger, in stream order, a batch per transaction (see posting.py)."""

from __future__ import annotations

import re
import zlib
from collections import defaultdict

import msgspec
from sqlalchemy import select, update

from services.points import store, timebank
from services.points.books import ACTOR, Books, RuleCache
from services.points.posting import SERVICE_EVENTS, post_service, release_waiting
from shared.db import is_sqlite, upsert
from shared.envelope import EventEnvelope, FollowedEnvelope
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
        # Before reading: the ledger parking this volunteer's hours meanwhile takes it too (Books).
        await books.lock([number])
        await books.load([number])
        if number in books.accounts:
            return  # opened already (a second registration event opens nothing)
        books.open(number, envelope.district_code, envelope.org_path)
        books.record(
            number, [PointsAccountOpened(volunteer_number=number)], account=number, cause=envelope, actor=ACTOR
        )
        await release_waiting(tx, rule_cache, volunteer=number, books=books)
        await books.flush()

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


# Events per ledger transaction while catching up (live, a batch is what came in 50 ms). On
# SQLite each event writes pages at random places (its account, lots, record, the journal's and
# the events' indexes by volunteer), and a commit writes every page it changed to the WAL and
# checkpoints them: the more events a commit, the more of them share a page. 16,000 posts 1.75
# times as many an event as 4,000 (1,000,000 events over 50,000 volunteers, bench/ledger_apply.py),
# commits in under two seconds, and holds about 190 MB more while reading ahead (370 MB in all).
# PostgreSQL keeps 4,000: a batch takes an advisory lock for each account not open yet, and its
# shared lock table holds 6,400 by default (64 a connection).
LEDGER_BATCH_SQLITE = 16000
LEDGER_BATCH_POSTGRESQL = 4000


def ledger_batch(event_store: EventStore) -> int:
    return LEDGER_BATCH_SQLITE if is_sqlite(event_store.engine) else LEDGER_BATCH_POSTGRESQL


LEDGER = "points-ledger"
_PARTITION_NAME = re.compile(rf"{LEDGER}-(\d+)of(\d+)")


def ledger_follower(
    event_store: EventStore,
    rule_cache: RuleCache,
    batch_size: int | None = None,
    *,
    partition: int = 0,
    partitions: int = 1,
) -> StreamFollower:
    """The ledger's follower of dispatch, or one of `partitions` (`partition` counts from 0):
    what the ledger keeps in order is a volunteer's account (daily cap, debts, what waits for the
    account or a record's confirmation, all one volunteer's), so partitions by volunteer apply
    side by side, each with its own checkpoint, as PostgreSQL replicas lead different ones."""
    names = {model.spec.name for model in SERVICE_EVENTS}

    async def apply(tx: Transaction, events: list) -> None:
        await post_service(tx, events, rule_cache)

    wants = None
    if partitions > 1:

        def wants(envelope: FollowedEnvelope | None) -> bool:
            return partition_of(_volunteer_of(envelope), partitions) == partition

    return StreamFollower(
        LEDGER if partitions == 1 else f"{LEDGER}-{partition + 1}of{partitions}",
        event_store,
        apply,
        subject=SERVICE_RECORD_SUBJECT,
        handles=names.__contains__,
        batch_size=batch_size or ledger_batch(event_store),
        wants=wants,
    )


def ledger_followers(
    event_store: EventStore, rule_cache: RuleCache, partitions: int, batch_size: int | None = None
) -> list[StreamFollower]:
    return [
        ledger_follower(event_store, rule_cache, batch_size, partition=index, partitions=partitions)
        for index in range(partitions)
    ]


def partition_of(volunteer_number: str, partitions: int) -> int:
    """The ledger partition of a volunteer's events: the same in every process and release."""
    return zlib.crc32(volunteer_number.encode()) % partitions


class _Owner(msgspec.Struct):
    volunteer_number: str = ""


_owner_decoder = msgspec.json.Decoder(_Owner)


def _volunteer_of(envelope: FollowedEnvelope | None) -> str:
    """The payload's volunteer, read without validating the rest (about a microsecond)."""
    if envelope is None:
        return ""  # an unreadable envelope: as below
    try:
        return _owner_decoder.decode(envelope.payload).volunteer_number
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""  # unreadable: one partition (the first) takes it, and dead-letters it once


async def start_from_whole_ledger(follower: StreamFollower, stream: str) -> None:
    """A ledger follower that never ran (new partitions, or a new count of them) starts where
    every volunteer's events are known to be applied: the lowest checkpoint of a complete set of
    ledger followers (the single one, or all partitions of another count), the highest such if
    several. From the stream's start it would change nothing either (each event is applied once,
    by its record's version), only slowly: a replay of every credit."""
    c = follower.checkpoints.c
    async with follower.store.transaction() as tx:
        rows = (
            await tx.conn.execute(
                select(c.consumer, c.sequence).where(c.stream == stream, c.consumer.like(f"{LEDGER}%"))
            )
        ).all()
        if any(name == follower.name for name, _ in rows):
            return
        sets: defaultdict[int, dict[int, int]] = defaultdict(dict)
        for name, sequence in rows:
            if name == LEDGER:
                sets[1][1] = sequence
            elif found := _PARTITION_NAME.fullmatch(name):
                sets[int(found[2])][int(found[1])] = sequence
        complete = [min(sequences.values()) for count, sequences in sets.items() if len(sequences) == count]
        if complete:
            row = {"consumer": follower.name, "stream": stream, "sequence": max(complete)}
            await tx.conn.execute(upsert(tx.conn, follower.checkpoints).values(**row).on_conflict_do_nothing())


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
