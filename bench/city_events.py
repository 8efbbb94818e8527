"""A synthetic city's events, written into JetStream as Beacon's services would publish them.

One city of 5 districts × 10 streets × 10 communities, a station per community; volunteers
registered, verified and given a points account; activities, check-ins and check-outs, confirmed
hours and the points they earn; orders placed, dispatched, accepted, completed and rated.
`python -m bench city_events --events N` writes into its own nats-server and prints the counts;
`bench/rebuild.py` uses `publish_city` to rebuild reporting from it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from bench._common import Stopwatch, jetstream, local_nats_server, main_of, progress, rate
from shared.bus import CONTEXTS, StreamSettings, context_stream, dead_letter_stream, ensure_stream
from shared.catalog import Event, catalog
from shared.events import dispatch as d
from shared.events import points as p
from shared.events import registry as r

NAME = "city_events"
CITY = "370300"
DISTRICTS, STREETS, COMMUNITIES = 5, 10, 10
START = datetime(2026, 1, 1, 2, tzinfo=UTC)
AGE_BANDS = ("18_34", "35_59", "60_plus")
STATUSES = ("masses", "party_member", "league_member")
THEMES = ("lantern_festival", "elderly_lunch", "civilised_traffic", "clean_community")
GROUPS = ("elderly", "children", "people_in_difficulty", "psychological_support", "public_needs")


class Writer:
    """Pipelined publishes (a chunk of acks awaited at a time), counting what each stream stored."""

    def __init__(self, js: JetStreamContext, chunk: int = 2000) -> None:
        self.js, self.chunk = js, chunk
        self.pending: list[asyncio.Future[Any]] = []
        self.versions: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    async def write(self, event: Event, aggregate_id: str, path: tuple[str, ...], at: datetime) -> None:
        spec = type(event).spec
        self.versions[f"{spec.aggregate}:{aggregate_id}"] += 1
        envelope = catalog.envelope(
            event, aggregate_id=aggregate_id, aggregate_version=self.versions[f"{spec.aggregate}:{aggregate_id}"],
            org_path=path, actor="bench", occurred_at=at,
        )  # fmt: skip
        stream = spec.context.upper()
        self.pending.append(
            await self.js.publish_async(
                catalog.subject_of(envelope), envelope.to_json(), headers={"Nats-Msg-Id": str(envelope.event_id)}, stream=stream
            )
        )
        self.counts[stream] += 1
        if len(self.pending) >= self.chunk:
            await self.flush()

    async def flush(self) -> None:
        await asyncio.gather(*self.pending)
        self.pending.clear()


def plan(events: int) -> dict[str, int]:
    """How many of each thing make about `events` events: 3 per volunteer, 3 per participation,
    5 per order, 1 per activity (one for each 20 participations), 1,056 for the tree and sites."""
    volunteers = max(10, events // 30)
    orders = max(1, events // 50)
    participations = max(1, int((events - 1056 - 3 * volunteers - 5 * orders) / 3.05))
    return {"volunteers": volunteers, "orders": orders, "participations": participations, "activities": max(1, participations // 20)}


async def publish_city(js: JetStreamContext, events: int, seed: int = 370300) -> Counter[str]:
    rng = random.Random(seed)
    writer = Writer(js)
    counts = plan(events)
    await writer.write(r.OrgUnitCreated(code=CITY, parent_code=None, level="city", name="淄博市", population=4_700_000, party_members=300_000), CITY, (CITY,), START)
    communities: list[tuple[str, ...]] = []
    for di in range(1, DISTRICTS + 1):
        district = f"3703{di:02d}"
        await writer.write(r.OrgUnitCreated(code=district, parent_code=CITY, level="district", name=f"区{di}", population=900_000, party_members=55_000), district, (district,), START)
        for si in range(1, STREETS + 1):
            street = f"{district}{si:03d}000"
            await writer.write(r.OrgUnitCreated(code=street, parent_code=district, level="street", name=f"街道{si}", population=90_000, party_members=5_500), street, (district, street), START)
            for ci in range(1, COMMUNITIES + 1):
                community = f"{district}{si:03d}{ci:03d}"
                path = (district, street, community)
                communities.append(path)
                await writer.write(r.OrgUnitCreated(code=community, parent_code=street, level="community", name=f"社区{ci}", population=9_000, party_members=550), community, path, START)
                site = f"ST-{community}"
                await writer.write(r.SiteOpened(site_id=site, org_unit_code=community, level="station", kind="community", name="站", opened_on=START.date()), site, path, START)
    homes: list[tuple[str, ...]] = []
    for n in range(1, counts["volunteers"] + 1):
        number, path = f"V{n:08d}", communities[n % len(communities)]
        homes.append(path)
        at = START + timedelta(minutes=n)
        await writer.write(
            r.VolunteerRegistered(
                volunteer_number=number, community_code=path[-1], age_band=AGE_BANDS[n % 3], gender="female" if n % 2 else "male",
                political_status=STATUSES[n % 3], skills=["first_aid"], consented_at=at,
            ),
            number, path, at,
        )  # fmt: skip
        await writer.write(r.VolunteerVerified(volunteer_number=number), number, path, at)
        await writer.write(p.PointsAccountOpened(volunteer_number=number), number, path, at)
    for a in range(1, counts["activities"] + 1):
        path = communities[a % len(communities)]
        day = START.date() + timedelta(days=a % 300)
        await writer.write(
            d.ActivityScheduled(
                activity_id=f"A{a:08d}", site_id=f"ST-{path[-1]}", kind="regular", theme=THEMES[a % 4], field="civilised_traffic",
                group_served=GROUPS[a % 5], starts_on=day, ends_on=day,
            ),
            f"A{a:08d}", path, START + timedelta(days=a % 300),
        )  # fmt: skip
    for i in range(1, counts["participations"] + 1):
        v = rng.randint(1, counts["volunteers"])
        number, path = f"V{v:08d}", homes[v - 1]
        at = START + timedelta(days=rng.randint(0, 320), hours=rng.randint(0, 10))
        hours = Decimal(rng.randint(2, 8)) / 2
        record = f"R{i:010d}"
        await writer.write(d.VolunteerCheckedIn(shift_id=f"SH{i:08d}", volunteer_number=number, at=at), f"SH{i:08d}.{number}", path, at)
        await writer.write(
            d.ServiceHoursConfirmed(
                record_id=record, volunteer_number=number, activity_id=f"A{1 + i % counts['activities']:08d}", shift_id=f"SH{i:08d}",
                site_id=f"ST-{path[-1]}", field="civilised_traffic", group_served="public_needs", service_date=at.date(),
                source="attendance", minutes=int(hours * 60), hours=hours, at=at,
            ),
            record, path, at,
        )  # fmt: skip
        await writer.write(
            p.ServiceCredited(
                volunteer_number=number, record_id=record, change="confirmed", service_date=at.date(), service_district=path[0],
                hours=hours, points=int(hours * 10), time_credit_minutes=int(hours * 60), rule_version=0, total_hours=hours,
                expires_on=date(at.year + 1, 12, 31),
            ),
            number, path, at,
        )  # fmt: skip
    for o in range(1, counts["orders"] + 1):
        order, path = f"O{o:08d}", communities[rng.randrange(len(communities))]
        placed = START + timedelta(days=rng.randint(0, 320))
        dispatched = placed + timedelta(minutes=rng.randint(5, 240))
        accepted = dispatched + timedelta(minutes=rng.randint(1, 120))
        window = dict(window_start=placed + timedelta(days=1), window_end=placed + timedelta(days=1, hours=2))
        await writer.write(d.OrderPlaced(order_id=order, kind="order", group_served="elderly", field="legal_aid", community_code=path[-1], site_id=f"ST-{path[-1]}", headcount=1, placed_via="resident", placed_at=placed, **window), order, path, placed)  # fmt: skip
        volunteer = f"V{rng.randint(1, counts['volunteers']):08d}"
        await writer.write(d.OrderDispatched(order_id=order, volunteer_numbers=[volunteer], site_id=f"ST-{path[-1]}", deadline=dispatched + timedelta(hours=4), attempt=1, at=dispatched), order, path, dispatched)
        await writer.write(d.OrderAccepted(order_id=order, accepted_by=volunteer, attempt=1, at=accepted), order, path, accepted)
        await writer.write(d.OrderCompleted(order_id=order, people_served=rng.randint(1, 5), at=accepted + timedelta(days=1)), order, path, accepted + timedelta(days=1))
        await writer.write(d.OrderRated(order_id=order, rating=rng.randint(3, 5), at=accepted + timedelta(days=2)), order, path, accepted + timedelta(days=2))
    await writer.flush()
    return writer.counts


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
        async with jetstream(server.url) as (_nc, js, _errors):
            await prepare_streams(js)
            watch = Stopwatch()
            counts = await publish_city(js, args.events)
            seconds = watch.seconds
    total = sum(counts.values())
    progress(f"{total} events written in {seconds:.1f}s")
    return {"events": total, **{f"{k.lower()}_events": v for k, v in sorted(counts.items())}, "events_per_s": rate(total, seconds)}


main = main_of(NAME, parse_args, run)

if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
