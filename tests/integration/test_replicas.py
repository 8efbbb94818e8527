"""Replicas on one PostgreSQL database: two of points and two of reporting consuming together,
over a real NATS, apply no event twice and share the work.

A reactor's durable consumer splits its messages between the replicas; the in-order followers
(points' ledger and orders, reporting's partitions: shares of the districts of dispatch and points,
registry whole) each run in one replica at a time (shared.leadership), and their checkpoints are
locked in every transaction (shared.replay), so that even two followers of one stream or district,
both folding every batch, add each batch once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.points import store as points_store
from services.points.app import create_app as create_points
from services.points.books import RuleCache
from services.points.subscribers import SERVICE_RECORD_SUBJECT, ledger_follower, registry_reactor
from services.reporting.app import create_app as create_reporting
from services.reporting.projection import Figures
from shared.bus import CONTEXTS, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import catalog
from shared.db import make_engine
from shared.envelope import EventEnvelope
from shared.events import dispatch as d
from shared.events import registry as r
from shared.eventstore import EventStore
from shared.replay import Projector
from shared.settings import ServiceSettings
from shared.subscriber import subscriptions
from tests.factories import registered
from tests.infra.auth import ADMIN
from tests.infra.city_events import (
    AT_HEPING,
    AT_XINGFU,
    CITY,
    DISTRICT,
    DISTRICTS,
    HEPING,
    NOV_2,
    STREET,
    XINGFU,
    Streams,
    a_city_of_districts,
    on,
)
from tests.infra.points import read_books
from tests.infra.postgres import throwaway_database
from tests.infra.waiting import eventually

pytestmark = [pytest.mark.nats, pytest.mark.postgres]

STREAMS = ("REGISTRY", "DISPATCH", "POINTS")
PARTITIONS = {"partition-0-of-2", "partition-1-of-2"}
VOLUNTEERS = 240
RECORDS = 1200  # each volunteer's records fall on days of their own: no daily cap applies
ORDERS = 120


class City:
    """Registry's and dispatch's events of a busy small city, and what the ledger must make of them."""

    def __init__(self) -> None:
        self.streams = Streams()
        self.hours: dict[str, Decimal] = {}  # record -> hours finally confirmed
        self.owner: dict[str, str] = {}  # record -> volunteer
        self.changes = 0  # dispatch events the ledger posts: confirmations and adjustments
        add = self.streams.add
        add(
            r.OrgUnitCreated(
                code=CITY, parent_code=None, level="city", name="淄博市", population=4_700_000, party_members=300_000
            ),
            CITY,
            (CITY,),
            NOV_2,
        )
        add(
            r.OrgUnitCreated(
                code=DISTRICT,
                parent_code=CITY,
                level="district",
                name="张店区",
                population=1_000_000,
                party_members=60_000,
            ),
            DISTRICT,
            (DISTRICT,),
            NOV_2,
        )
        add(
            r.OrgUnitCreated(
                code=STREET,
                parent_code=DISTRICT,
                level="street",
                name="车站街道",
                population=80_000,
                party_members=5_000,
            ),
            STREET,
            (DISTRICT, STREET),
            NOV_2,
        )
        for code, name in ((HEPING, "和平社区"), (XINGFU, "幸福社区")):
            add(
                r.OrgUnitCreated(
                    code=code, parent_code=STREET, level="community", name=name, population=8_000, party_members=500
                ),
                code,
                (DISTRICT, STREET, code),
                NOV_2,
            )
        add(
            r.SiteOpened(
                site_id="ST-HEPING", org_unit_code=HEPING, level="station", kind="community", name="站", opened_on=NOV_2
            ),
            "ST-HEPING",
            AT_HEPING,
            NOV_2,
        )
        for n in range(1, VOLUNTEERS + 1):
            path = AT_HEPING if n % 2 else AT_XINGFU
            add(registered(n, party=n % 7 == 0), f"V{n:08d}", path, NOV_2)
            add(r.VolunteerVerified(volunteer_number=f"V{n:08d}"), f"V{n:08d}", path, NOV_2)
        for a in range(1, 11):
            day = NOV_2 + timedelta(days=a)
            add(
                d.ActivityScheduled(activity_id=f"A{a:08d}", site_id="ST-HEPING", kind="regular", theme="elderly_lunch", field="civilised_traffic", group_served="elderly", starts_on=day, ends_on=day),
                f"A{a:08d}", AT_HEPING, NOV_2,
            )  # fmt: skip
        for i in range(RECORDS):
            volunteer, day = f"V{1 + i % VOLUNTEERS:08d}", NOV_2 + timedelta(days=i // VOLUNTEERS)
            record, shift, hours = f"R{i:08d}", f"SH{i:08d}", Decimal(1 + i % 6) / 2
            common = {
                "record_id": record, "volunteer_number": volunteer, "activity_id": f"A{1 + i % 10:08d}", "shift_id": shift, "site_id": "ST-HEPING",
                "field": "civilised_traffic", "group_served": "elderly", "service_date": day, "source": "attendance",
            }  # fmt: skip
            add(
                d.VolunteerCheckedIn(shift_id=shift, volunteer_number=volunteer, at=on(day)),
                f"{shift}.{volunteer}",
                AT_HEPING,
                day,
            )
            add(
                d.ServiceHoursConfirmed(**common, minutes=int(hours * 60), hours=hours, at=on(day)),
                record,
                AT_HEPING,
                day,
            )
            self.hours[record], self.owner[record] = hours, volunteer
            self.changes += 1
            if i % 5 == 0:
                later = hours + Decimal("0.5")
                add(
                    d.ServiceHoursAdjusted(**common, previous_minutes=int(hours * 60), previous_hours=hours, minutes=int(later * 60), hours=later, reason="recount", at=on(day)),
                    record, AT_HEPING, day,
                )  # fmt: skip
                self.hours[record] = later
                self.changes += 1
        for o in range(1, ORDERS + 1):
            order, day = f"O{o:08d}", NOV_2 + timedelta(days=o % 10)
            window = {"window_start": on(day), "window_end": on(day) + timedelta(hours=2)}
            add(d.OrderPlaced(order_id=order, kind="order", group_served="elderly", field="legal_aid", community_code=HEPING, site_id="ST-HEPING", headcount=1, placed_via="resident", placed_at=on(day), **window), order, AT_HEPING, day)  # fmt: skip
            add(d.OrderAccepted(order_id=order, accepted_by=f"V{o:08d}", attempt=1, at=on(day)), order, AT_HEPING, day)
            add(d.OrderCompleted(order_id=order, people_served=1 + o % 3, at=on(day)), order, AT_HEPING, day)

    def expected_points(self) -> dict[str, int]:
        """Each volunteer's balance under the default rules: 10 points an hour, none capped."""
        balances: Counter[str] = Counter()
        for record, hours in self.hours.items():
            balances[self.owner[record]] += int(hours * 10)
        return dict(balances)

    @property
    def published(self) -> int:
        return sum(len(events) for events in self.streams.by_context.values())


async def publish(js: JetStreamContext, envelopes: list[EventEnvelope]) -> None:
    """Pipelined, as a service's outbox relay publishes, a few hundred acks awaited at a time."""
    pending: list[asyncio.Future[Any]] = []
    for envelope in envelopes:
        subject = catalog.subject_of(envelope)
        headers = {"Nats-Msg-Id": str(envelope.event_id)}
        pending.append(
            await js.publish_async(subject, envelope.to_json(), headers=headers, stream=subject.split(".")[0].upper())
        )
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


def interleaved(city: City | Streams, *contexts: str) -> list[EventEnvelope]:
    """The contexts' events side by side, as their services publish them at once."""
    streams = city.streams if isinstance(city, City) else city
    queues = [[envelope for envelope, _ in streams.by_context[context]] for context in contexts]
    longest = max(len(queue) for queue in queues)
    return [queue[i] for i in range(longest) for queue in queues if i < len(queue)]


async def figures_of(engine: AsyncEngine, generation: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a generation; of the counters, those not at zero (a counter that batches
    took up and back down again stays as a row at zero: where batches end is no figure)."""
    tables = Figures().figure_tables(generation)
    async with engine.connect() as conn:
        return {
            table.name.rsplit("_g", 1)[0]: sorted(
                tuple(row)
                for row in await conn.execute(
                    select(table).where(table.c.value != 0) if table is tables.counters else select(table)
                )
            )
            for table in tables.all()
        }


async def rebuilt_from_zero(
    admin_url: str, nats_url: str, processes: int = 1
) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
    """The figures a single projector folds from sequence 1 of every stream (in `processes`
    processes), in a database of its own, and how many events it folded."""
    async with throwaway_database(admin_url) as url:
        engine = make_engine(url)
        nc = await nats.connect(nats_url)
        try:
            projector = Projector(Figures(), engine, rebuild_processes=processes)
            await projector.setup()
            generation = await projector.rebuild(nc)
            return await figures_of(engine, generation), projector.applied_total
        finally:
            await nc.close()
            await engine.dispose()


@pytest.fixture
async def streams(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for context in CONTEXTS:
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    yield js
    await nc.close()


async def test_two_projectors_following_the_same_streams_fold_each_event_once(
    streams: JetStreamContext, nats_url: str, postgres_admin_url: str
) -> None:
    # No leadership here: both fold every batch of every stream, and race for each commit.
    city = City()
    async with throwaway_database(postgres_admin_url) as url, contextlib.AsyncExitStack() as stack:
        engines = [make_engine(url) for _ in range(2)]
        projectors = [Projector(Figures(), engine, batch_size=25) for engine in engines]
        for projector in projectors:
            await projector.setup()
        clients = [await nats.connect(nats_url) for _ in projectors]
        following = [
            asyncio.ensure_future(projector.follow(nc, context))
            for projector, nc in zip(projectors, clients, strict=True)
            for context in ("registry", "dispatch")
        ]
        stack.push_async_callback(asyncio.gather, *following, return_exceptions=True)
        for task in following:
            stack.callback(task.cancel)
        await publish(streams, interleaved(city, "registry", "dispatch"))
        await eventually(lambda: caught_up(projectors[0], streams, ("REGISTRY", "DISPATCH")), bool, timeout=120)
        figures = await figures_of(engines[0], 1)
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)
        for nc in clients:
            await nc.close()
        for engine in engines:
            await engine.dispose()

    expected, folded = await rebuilt_from_zero(postgres_admin_url, nats_url)
    assert figures == expected
    assert sum(projector.applied_total for projector in projectors) == folded
    # Which of the two commits a batch is a race: one may commit them all, the other finding each
    # already done; either way nothing is folded twice (the two lines above).


async def test_two_ledger_followers_of_one_stream_post_each_record_once(
    streams: JetStreamContext, postgres_admin_url: str, nats_url: str
) -> None:
    city = City()
    async with throwaway_database(postgres_admin_url) as url:
        stores = [EventStore(make_engine(url), points_store.schema) for _ in range(2)]
        await stores[0].create_tables()
        registry = registry_reactor(stores[0], RuleCache())
        for envelope, event in city.streams.by_context["registry"]:
            handler = registry.handlers.get(envelope.type)
            if handler is not None:
                async with stores[0].transaction() as tx:
                    await handler(tx, envelope, event)
        followers = [ledger_follower(store, RuleCache(), batch_size=25) for store in stores]
        clients = [await nats.connect(nats_url) for _ in followers]
        following = [asyncio.ensure_future(f.follow(nc, "dispatch")) for f, nc in zip(followers, clients, strict=True)]
        try:
            await publish(streams, interleaved(city, "dispatch"))
            posted = await eventually(
                lambda: ledger_changes(stores[0]), lambda changes: sum(changes.values()) >= city.changes, timeout=120
            )
            books = await read_books(stores[0])
        finally:
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
            for nc in clients:
                await nc.close()
            for store in stores:
                await store.engine.dispose()

    assert sum(posted.values()) == city.changes and max(posted.values()) == 1, "one posting per dispatch event"
    assert {
        number: account.balance for number, account in books.accounts.items() if account.balance
    } == city.expected_points()
    # Which follower commits a batch is a race the checkpoint lock decides (one may win them all);
    # between them, each event is applied once.
    assert sum(follower.applied_total for follower in followers) == city.changes


async def test_ledger_partitions_led_by_two_replicas_post_each_record_once_and_the_books_balance(
    streams: JetStreamContext, postgres_admin_url: str, nats_url: str
) -> None:
    """Four partitions by volunteer, two in each replica, commit side by side: each volunteer's
    events in order in one of them, the shared balances (issuance, time) added to, not overwritten."""
    city = City()
    async with throwaway_database(postgres_admin_url) as url:
        stores = [EventStore(make_engine(url), points_store.schema) for _ in range(2)]
        await stores[0].create_tables()
        registry = registry_reactor(stores[0], RuleCache())
        for envelope, event in city.streams.by_context["registry"]:
            handler = registry.handlers.get(envelope.type)
            if handler is not None:
                async with stores[0].transaction() as tx:
                    await handler(tx, envelope, event)
        followers = [
            ledger_follower(stores[index // 2], RuleCache(), batch_size=25, partition=index, partitions=4)
            for index in range(4)
        ]
        clients = [await nats.connect(nats_url) for _ in followers]
        following = [asyncio.ensure_future(f.follow(nc, "dispatch")) for f, nc in zip(followers, clients, strict=True)]
        try:
            await publish(streams, interleaved(city, "dispatch"))
            posted = await eventually(
                lambda: ledger_changes(stores[0]), lambda changes: sum(changes.values()) >= city.changes, timeout=120
            )
            # A follower's checkpoint is the last message its subjects take, not the stream's end.
            last = (await streams.get_last_msg("DISPATCH", SERVICE_RECORD_SUBJECT)).seq
            for follower in followers:
                done = await eventually(lambda f=follower: f.checkpoint("DISPATCH"), lambda seq: seq == last, timeout=60)
                assert done == last, f"{follower.name} stopped at {done} of {last}"
            books = await read_books(stores[0])
        finally:
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
            for nc in clients:
                await nc.close()
            for store in stores:
                await store.engine.dispose()

    assert sum(posted.values()) == city.changes and max(posted.values()) == 1, "one posting per dispatch event"
    expected = city.expected_points()
    assert {number: account.balance for number, account in books.accounts.items() if account.balance} == expected
    assert books.balances[(f"issuance:{DISTRICT}", "points")] == -sum(expected.values())
    assert {key: books.journal_balances[key] for key in books.balances} == books.balances, "balances = journal"
    assert sum(follower.applied_total for follower in followers) == city.changes
    assert all(follower.applied_total for follower in followers), "each partition posted its volunteers' events"


async def ledger_changes(store: EventStore) -> Counter[tuple[str, str]]:
    """How many postings each (record, change) has: one each, or an event was posted twice."""
    events = store.schema.events
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(events.c.envelope).where(events.c.event_type.in_(("ServiceCredited", "ServiceDebited")))
        )
        changes: Counter[tuple[str, str]] = Counter()
        for (body,) in rows:
            payload = catalog.payload_of(EventEnvelope.model_validate_json(body))
            changes[(payload.record_id, payload.change)] += 1
    return changes


async def accounts_opened(store: EventStore) -> int:
    async with store.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(points_store.accounts)) or 0


@contextlib.asynccontextmanager
async def replica(create: Any, nats_url: str, database_url: str) -> AsyncIterator[Any]:
    app = create(ServiceSettings(nats_url=nats_url, database_url=database_url))
    async with app.router.lifespan_context(app):
        yield app


async def test_two_replicas_of_points_and_of_reporting_share_the_work_and_apply_each_event_once(
    streams: JetStreamContext, nats_url: str, postgres_admin_url: str
) -> None:
    city = City()
    async with contextlib.AsyncExitStack() as stack:
        points_url = await stack.enter_async_context(throwaway_database(postgres_admin_url))
        reporting_url = await stack.enter_async_context(throwaway_database(postgres_admin_url))
        points = [await stack.enter_async_context(replica(create_points, nats_url, points_url)) for _ in range(2)]
        reporting = [
            await stack.enter_async_context(replica(create_reporting, nats_url, reporting_url)) for _ in range(2)
        ]
        # Each replica leads its share of the in-order followers before the events come.
        assert all(await eventually(lambda: leading(points + reporting), lambda sets: all(sets), timeout=30))
        ledgers = {ledger.name for ledger in points[0].state.ledgers}  # partitions of the ledger
        assert len(ledgers) > 1
        for apps, followers in ((points, {*ledgers, "points-orders"}), (reporting, PARTITIONS)):
            first, second = await leading(apps)
            assert first.isdisjoint(second) and first | second == followers

        # Dispatch's events right after registry's, not once the accounts are open: points parks
        # the hours of a volunteer whose account is not open yet, while the opening may be
        # committing (both take the account's lock, so none is stranded).
        store = points[0].state.runtime.store
        await publish(streams, interleaved(city, "registry"))
        await publish(streams, interleaved(city, "dispatch"))
        await eventually(lambda: accounts_opened(store), lambda opened: opened == VOLUNTEERS, timeout=60)
        posted = await eventually(
            lambda: ledger_changes(store), lambda changes: sum(changes.values()) >= city.changes, timeout=180
        )
        await eventually(lambda: store.outbox_depth(), lambda depth: depth == 0, timeout=60)
        projector = reporting[0].state.projector
        await eventually(lambda: caught_up(projector, streams), bool, timeout=180)
        figures = await figures_of(projector.engine, await projector.active_generation())
        books = await read_books(store)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=points[1]), base_url="http://points", headers=ADMIN
        ) as client:
            trial_balance = (await client.get("/ledger/trial-balance")).json()

        registry_handled = [next(iter(subscriptions(app.state.runtime.broker))).reactor.handled for app in points]
        ledger_applied = [sum(ledger.applied_total for ledger in app.state.ledgers) for app in points]
        folded = [app.state.projector.applied_total for app in reporting]

    # Both replicas of each service did part of the work.
    assert all(registry_handled), f"registry events handled per points replica: {registry_handled}"
    assert all(folded), f"events folded per reporting replica: {folded}"
    # Points: one posting per dispatch event, the balances the rules give, the books balanced.
    assert sum(posted.values()) == city.changes and max(posted.values()) == 1
    assert sum(ledger_applied) == city.changes
    assert all(ledger_applied), f"ledger events posted per points replica: {ledger_applied}"
    assert sum(registry_handled) == VOLUNTEERS + 1  # the registrations and the site (points follows no more)
    assert {
        number: account.balance for number, account in books.accounts.items() if account.balance
    } == city.expected_points()
    assert trial_balance["balanced"] is True
    # Reporting: the figures of a single projector rebuilding from zero, each event folded once.
    expected, folded_once = await rebuilt_from_zero(postgres_admin_url, nats_url)
    assert figures == expected
    assert sum(folded) == folded_once


async def leading(apps: list[Any]) -> list[set[str]]:
    return [app.state.followers.leading for app in apps]


async def caught_up(projector: Projector, js: JetStreamContext, streams: tuple[str, ...] = STREAMS) -> bool:
    generation = await projector.active_generation()
    return all([await projector.caught_up(js, generation, stream) for stream in streams])


async def test_two_replicas_of_reporting_each_fold_a_partition_of_the_districts_and_a_rebuild_agrees(
    streams: JetStreamContext, nats_url: str, postgres_admin_url: str
) -> None:
    city = a_city_of_districts(volunteers=120, records=900, orders=120)
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(throwaway_database(postgres_admin_url))
        reporting = [await stack.enter_async_context(replica(create_reporting, nats_url, url)) for _ in range(2)]
        first, second = await eventually(lambda: leading(reporting), lambda sets: all(sets), timeout=30)
        assert first.isdisjoint(second) and first | second == PARTITIONS
        # The three services publish at once: registry's transfers and dispatch's hours of the
        # same volunteers reach the two partitions in no particular order.
        await publish(streams, interleaved(city, "registry", "dispatch", "points"))
        projector = reporting[0].state.projector
        await eventually(lambda: caught_up(projector, streams), bool, timeout=180)
        generation = await projector.active_generation()
        figures = await figures_of(projector.engine, generation)
        async with projector.engine.connect() as conn:
            c = projector.checkpoints.c
            keys = {key for (key,) in await conn.execute(select(c.stream).where(c.generation == generation))}
        folded = [app.state.projector.applied_total for app in reporting]
        dispatch_events = {
            district: sum(1 for envelope, _ in city.by_context["dispatch"] if envelope.org_path[0] == district)
            for district in DISTRICTS
        }

    # Each district of dispatch and points has a checkpoint of its own; registry is followed whole.
    assert keys == {"REGISTRY"} | {f"{stream}.{d}" for stream in ("DISPATCH", "POINTS") for d in DISTRICTS}
    assert all(folded), f"events folded per reporting replica: {folded}"
    assert min(folded) >= min(dispatch_events.values()), "each replica folded a share of dispatch's districts"
    # The live figures are a single projector's from zero, and a rebuild split among processes agrees.
    expected, folded_once = await rebuilt_from_zero(postgres_admin_url, nats_url)
    assert figures == expected
    assert sum(folded) == folded_once
    split, folded_split = await rebuilt_from_zero(postgres_admin_url, nats_url, processes=2)
    assert split == expected and folded_split == folded_once
