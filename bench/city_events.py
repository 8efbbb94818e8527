"""A synthetic city's events, written into JetStream as Beacon's services would publish them.

One city of 8 districts (Zibo's codes: 370302–370306, 370321–370323, so that reporting's
partitions each get some) × 6 streets × 10 communities, a station per community; volunteers
registered, verified and given a points account; activities and their shifts; each participation
signed up for, checked in and out, recorded, its hours confirmed and credited with points (of
these six, reporting folds three); orders placed, dispatched, accepted, completed and rated. Every
district holds about the same share of the events, and each stream grows day by day, as a city's
do (a rebuild's transactions then each cover a stretch of days, not every day of the year).
`python -m bench city_events --events N` writes into its own nats-server and prints the counts;
`bench/rebuild.py` uses `publish_city` to rebuild reporting from it, and `bench/replicas.py`
encodes the messages first (`city_messages`) and then publishes them (`publish_messages`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bench._common import Stopwatch, jetstream, local_nats_server, main_of, progress, rate
from shared.bus import CONTEXTS, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import Event, catalog
from shared.events import dispatch as d
from shared.events import points as p
from shared.events import registry as r

NAME = "city_events"
CITY = "370300"
DISTRICTS = ("370302", "370303", "370304", "370305", "370306", "370321", "370322", "370323")
STREETS, COMMUNITIES = 6, 10
TREE = 1 + len(DISTRICTS) * (1 + STREETS * (1 + 2 * COMMUNITIES))  # org units, and a station per community
START = datetime(2026, 1, 1, 2, tzinfo=UTC)
DAYS = 321  # the days of service and orders from START
AGE_BANDS = ("18_34", "35_59", "60_plus")
STATUSES = ("masses", "party_member", "league_member")
THEMES = ("lantern_festival", "elderly_lunch", "civilised_traffic", "clean_community")
# The default rule's bands, as dispatch writes them into each record.
ROUNDING = [d.RoundingBand(below_minutes=m, hours=Decimal(h)) for m, h in ((15, 0), (45, "0.5"), (60, 1))]
GROUPS = ("elderly", "children", "people_in_difficulty", "psychological_support", "public_needs")


Message = tuple[str, bytes, dict[str, str], str]  # subject, payload, headers, stream


class Writer:
    """Envelopes as the services would publish them, each aggregate's versions counted, but for
    an aggregate whose version the caller gives (one that has its events all at once: a count
    kept for each would grow with the city)."""

    def __init__(self) -> None:
        self.versions: Counter[str] = Counter()

    def message(
        self, event: Event, aggregate_id: str, path: tuple[str, ...], at: datetime, version: int | None = None
    ) -> Message:
        spec = type(event).spec
        if version is None:
            self.versions[f"{spec.aggregate}:{aggregate_id}"] += 1
            version = self.versions[f"{spec.aggregate}:{aggregate_id}"]
        envelope = catalog.envelope(
            event, aggregate_id=aggregate_id, aggregate_version=version, org_path=path, actor="bench", occurred_at=at
        )
        headers = {"Nats-Msg-Id": str(envelope.event_id)}
        return catalog.subject_of(envelope), envelope.to_json(), headers, spec.context.upper()


def plan(events: int) -> dict[str, int]:
    """How many of each thing make about `events` events: 3 per volunteer, 6 per participation,
    5 per order, 2 per activity (one for each 20 participations) and its shift, and the tree and
    its sites."""
    volunteers = max(10, events // 30)
    orders = max(1, events // 50)
    participations = max(1, int((events - TREE - 3 * volunteers - 5 * orders) / 6.1))
    return {
        "volunteers": volunteers,
        "orders": orders,
        "participations": participations,
        "activities": max(1, participations // 20),
    }


def city_messages(events: int, seed: int = 370300) -> Iterator[Message]:
    """The city's messages in the order its services publish them, encoded one at a time."""
    rng = random.Random(seed)
    writer = Writer()
    write = writer.message
    counts = plan(events)
    yield write(
        r.OrgUnitCreated(
            code=CITY, parent_code=None, level="city", name="淄博市", population=4_700_000, party_members=300_000
        ),
        CITY,
        (CITY,),
        START,
    )
    communities: list[tuple[str, ...]] = []
    for di, district in enumerate(DISTRICTS, start=1):
        yield write(
            r.OrgUnitCreated(
                code=district,
                parent_code=CITY,
                level="district",
                name=f"区{di}",
                population=900_000,
                party_members=55_000,
            ),
            district,
            (district,),
            START,
        )
        for si in range(1, STREETS + 1):
            street = f"{district}{si:03d}000"
            yield write(
                r.OrgUnitCreated(
                    code=street,
                    parent_code=district,
                    level="street",
                    name=f"街道{si}",
                    population=90_000,
                    party_members=5_500,
                ),
                street,
                (district, street),
                START,
            )
            for ci in range(1, COMMUNITIES + 1):
                community = f"{district}{si:03d}{ci:03d}"
                path = (district, street, community)
                communities.append(path)
                yield write(
                    r.OrgUnitCreated(
                        code=community,
                        parent_code=street,
                        level="community",
                        name=f"社区{ci}",
                        population=9_000,
                        party_members=550,
                    ),
                    community,
                    path,
                    START,
                )
                site = f"ST-{community}"
                yield write(
                    r.SiteOpened(
                        site_id=site,
                        org_unit_code=community,
                        level="station",
                        kind="community",
                        name="站",
                        opened_on=START.date(),
                    ),
                    site,
                    path,
                    START,
                )
    homes: list[tuple[str, ...]] = []
    for n in range(1, counts["volunteers"] + 1):
        number, path = f"V{n:08d}", communities[n % len(communities)]
        homes.append(path)
        at = START + timedelta(minutes=n)
        yield write(
            r.VolunteerRegistered(
                volunteer_number=number, community_code=path[-1], age_band=AGE_BANDS[n % 3], gender="female" if n % 2 else "male",
                political_status=STATUSES[n % 3], skills=["first_aid"], consented_at=at,
            ),
            number, path, at,
        )  # fmt: skip
        yield write(r.VolunteerVerified(volunteer_number=number), number, path, at)
        yield write(p.PointsAccountOpened(volunteer_number=number), number, path, at)
    # Then day by day, as a city's streams grow: each day's activities, participations from
    # sign-up to credit, and orders (an order's later steps follow its placing at once,
    # up to two days early). Each window of a rebuild then covers a stretch of days.
    activities, participations, orders = counts["activities"], counts["participations"], counts["orders"]
    a = i = o = 1
    per_day = max(1, activities // min(DAYS, 300))
    for day in range(DAYS):
        while a <= activities and (a - 1) * min(DAYS, 300) // activities <= day:
            yield from _activity(write, a, communities[a % len(communities)], day)
            a += 1
        while i <= participations and (i - 1) * DAYS // participations <= day:
            v = rng.randint(1, counts["volunteers"])
            # One of the last day's worth of activities scheduled: its shift is open before
            # anyone signs up for it.
            activity = a - 1 - i % min(a - 1, per_day)
            yield from _participation(write, rng, i, f"V{v:08d}", homes[v - 1], day, activity)
            i += 1
        while o <= orders and (o - 1) * DAYS // orders <= day:
            volunteer = f"V{rng.randint(1, counts['volunteers']):08d}"
            yield from _order(write, rng, o, communities[rng.randrange(len(communities))], day, volunteer)
            o += 1


def _activity(write: Any, a: int, path: tuple[str, ...], day: int) -> Iterator[Message]:
    on = START.date() + timedelta(days=day)
    yield write(
        d.ActivityScheduled(
            activity_id=f"A{a:08d}", site_id=f"ST-{path[-1]}", kind="regular", theme=THEMES[a % 4], field="civilised_traffic",
            group_served=GROUPS[a % 5], starts_on=on, ends_on=on,
        ),
        f"A{a:08d}", path, START + timedelta(days=day), 1,
    )  # fmt: skip
    starts = START + timedelta(days=day)
    yield write(
        d.ShiftOpened(
            shift_id=f"SH{a:08d}", activity_id=f"A{a:08d}", site_id=f"ST-{path[-1]}", starts_at=starts,
            ends_at=starts + timedelta(hours=14), capacity=50,
        ),
        f"SH{a:08d}", path, starts,
    )  # fmt: skip


def _participation(
    write: Any, rng: random.Random, i: int, number: str, path: tuple[str, ...], day: int, activity: int
) -> Iterator[Message]:
    at = START + timedelta(days=day, hours=rng.randint(0, 10))
    hours = Decimal(rng.randint(2, 8)) / 2
    record, shift = f"R{i:010d}", f"SH{activity:08d}"
    attendance = f"{shift}.{number}.{i}"  # one per participation: a volunteer may come twice
    ended = at + timedelta(minutes=int(hours * 60))
    yield write(d.VolunteerSignedUp(shift_id=shift, volunteer_number=number, position="confirmed", at=at), shift, path, at)
    yield write(d.VolunteerCheckedIn(shift_id=shift, volunteer_number=number, at=at), attendance, path, at, 1)
    checked_out = d.VolunteerCheckedOut(shift_id=shift, volunteer_number=number, at=ended, minutes=int(hours * 60))
    yield write(checked_out, attendance, path, ended, 2)
    served = {
        "record_id": record, "volunteer_number": number, "activity_id": f"A{activity:08d}", "shift_id": shift,
        "site_id": f"ST-{path[-1]}", "field": "civilised_traffic", "group_served": "public_needs",
        "service_date": at.date(), "source": "attendance", "minutes": int(hours * 60), "hours": hours,
    }  # fmt: skip
    yield write(d.ServiceRecorded(**served, started_at=at, ended_at=ended, rounding=ROUNDING), record, path, ended, 1)
    yield write(d.ServiceHoursConfirmed(**served, at=ended), record, path, ended, 2)
    yield write(
        p.ServiceCredited(
            volunteer_number=number, record_id=record, change="confirmed", service_date=at.date(), service_district=path[0],
            hours=hours, points=int(hours * 10), time_credit_minutes=int(hours * 60), rule_version=0, total_hours=hours,
            expires_on=date(at.year + 1, 12, 31),
        ),
        number, path, at,
    )  # fmt: skip


def _order(
    write: Any, rng: random.Random, o: int, path: tuple[str, ...], day: int, volunteer: str
) -> Iterator[Message]:
    order = f"O{o:08d}"
    placed = START + timedelta(days=day, minutes=rng.randint(0, 600))
    dispatched = placed + timedelta(minutes=rng.randint(5, 240))
    accepted = dispatched + timedelta(minutes=rng.randint(1, 120))
    window = dict(window_start=placed + timedelta(days=1), window_end=placed + timedelta(days=1, hours=2))
    yield write(d.OrderPlaced(order_id=order, kind="order", group_served="elderly", field="legal_aid", community_code=path[-1], site_id=f"ST-{path[-1]}", headcount=1, placed_via="resident", placed_at=placed, **window), order, path, placed, 1)  # fmt: skip
    yield write(
        d.OrderDispatched(
            order_id=order, volunteer_numbers=[volunteer], site_id=f"ST-{path[-1]}", deadline=dispatched + timedelta(hours=4),
            attempt=1, at=dispatched,
        ),
        order, path, dispatched, 2,
    )  # fmt: skip
    yield write(d.OrderAccepted(order_id=order, accepted_by=volunteer, attempt=1, at=accepted), order, path, accepted, 3)
    completed = accepted + timedelta(days=1)
    yield write(d.OrderCompleted(order_id=order, people_served=rng.randint(1, 5), at=completed), order, path, completed, 4)
    rated = accepted + timedelta(days=2)
    yield write(d.OrderRated(order_id=order, rating=rng.randint(3, 5), at=rated), order, path, rated, 5)


async def publish_messages(nc: Client, messages: Iterable[Message], window: int = 10_000) -> Counter[str]:
    """Publish in order on one connection, as an outbox relay does, each with the reply inbox its
    stream acknowledges to, at most `window` unacknowledged; how many each stream stored. Core
    publishes and one subscription for every acknowledgement: nats-py's `publish_async` (a
    future and a handler per message) capped a publisher near 20,000 messages/s, under the rate
    the replicas benchmark measures."""
    counts: Counter[str] = Counter()
    inbox = nc.new_inbox()
    sent = acknowledged = 0
    refused: list[bytes] = []
    moved = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if b'"error"' in msg.data:
            refused.append(msg.data)
        moved.set()

    subscription = await nc.subscribe(inbox, cb=on_ack)
    try:
        for subject, payload, headers, stream in messages:
            await nc.publish(subject, payload, reply=inbox, headers=headers)
            sent += 1
            counts[stream] += 1
            while sent - acknowledged >= window:
                moved.clear()
                await asyncio.wait_for(moved.wait(), 30)
        while acknowledged < sent:
            moved.clear()
            await asyncio.wait_for(moved.wait(), 30)
    finally:
        await subscription.unsubscribe()
    if refused:
        raise RuntimeError(f"{len(refused)} messages refused, the first: {refused[0]!r}")
    return counts


async def publish_city(nc: Client, events: int, seed: int = 370300) -> Counter[str]:
    """The city's messages encoded as they are published (memory stays small whatever the size)."""
    return await publish_messages(nc, city_messages(events, seed))


async def prepare_streams(js: JetStreamContext) -> None:
    for context in CONTEXTS:
        await ensure_stream(js, context_stream(context, StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="about how many events (default 100000)")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with local_nats_server(workdir) as server:
        async with jetstream(server.url) as (nc, js, _errors):
            await prepare_streams(js)
            watch = Stopwatch()
            counts = await publish_city(nc, args.events)
            seconds = watch.seconds
    total = sum(counts.values())
    progress(f"{total} events written in {seconds:.1f}s")
    return {
        "events": total,
        **{f"{k.lower()}_events": v for k, v in sorted(counts.items())},
        "events_per_s": rate(total, seconds),
    }


main = main_of(NAME, parse_args, run)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
