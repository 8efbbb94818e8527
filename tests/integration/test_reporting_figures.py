"""Reporting's figures from the three contexts' events, on SQLite and PostgreSQL: per node of the
org tree, as of a day and within a period; the same in any interleaving of the streams."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text

from services.reporting.projection import Figures
from services.reporting.queries import figures_for, order_times, party_targets, period_of, top_teams, top_volunteers
from shared.catalog import Event, catalog
from shared.db import make_engine, reading, writing
from shared.envelope import EventEnvelope
from shared.errors import Invalid, NotFound
from shared.events import dispatch as d
from shared.events import registry as r
from shared.replay import Projector
from tests.factories import PATH, registered, registered_envelope
from tests.infra.city_events import (
    AT_HEPING,
    AT_XINGFU,
    CITY,
    DEC_5,
    DISTRICT,
    HEPING,
    NOV_2,
    NOV_20,
    STREET,
    XINGFU,
    Streams,
    a_city,
    a_city_of_districts,
    on,
)
from tests.infra.postgres import throwaway_database
from tests.infra.statements import plan_of, statements_sent


@pytest.fixture
async def projector(database_url: str) -> AsyncIterator[Projector]:
    projector = Projector(Figures(), make_engine(database_url))
    await projector.setup()
    yield projector
    await projector.engine.dispose()


async def apply(projector: Projector, generation: int, events: list[tuple[EventEnvelope, Event]], batch: int) -> None:
    for start in range(0, len(events), batch):
        async with writing(projector.engine) as conn:
            await projector.projection.apply(conn, generation, events[start : start + batch])


async def figures(projector: Projector, code: str, **period: Any) -> dict[str, Any]:
    generation = await projector.active_generation()
    return await figures_for(projector.engine, projector.projection, generation, code, **period)  # type: ignore[arg-type]


async def test_every_context_counts_at_every_node_of_the_path_as_of_a_day_and_in_a_period(projector) -> None:
    city = a_city()
    for context in ("registry", "dispatch", "points"):
        await apply(projector, 1, city.by_context[context], batch=5)

    heping = (await figures(projector, HEPING))["figures"]
    assert heping == {
        "activities": 1, "activities.field.civilised_traffic": 1, "activities.group_served.public_needs": 1,
        "activities.kind.festival": 1, "activities.theme.lantern_festival": 1,
        "orders.accepted": 1, "orders.completed": 1, "orders.people_served": 3, "orders.placed": 1, "orders.rated": 1,
        "orders.rating_sum": 5, "participations": 1, "party_members.reported_in": 1,
        "points.accounts_opened": 1, "points.issued": 15, "points.redeemed": 10, "service.hours": 1.5,
        "sites.kind.community": 1, "sites.level.station": 1, "stars.level.1": 1, "teams": 1, "teams.kind.general": 1,
        "trainees": 1, "trainings": 1,
        "volunteers.age_band.35_59": 1, "volunteers.deregistered": 1, "volunteers.gender.female": 1,
        "volunteers.new": 3, "volunteers.political_status.party_member": 1, "volunteers.registered": 1,
        "volunteers.transferred_out": 1, "volunteers.verified": 3,
    }  # fmt: skip
    xingfu = (await figures(projector, XINGFU))["figures"]
    assert (xingfu["volunteers.registered"], xingfu["volunteers.transferred_in"]) == (1, 1)
    district = await figures(projector, DISTRICT)
    assert (
        district["figures"]["volunteers.registered"] == 2 and district["volunteer_share_of_population"] == 2 / 1_000_000
    )
    assert (await figures(projector, CITY))["figures"] == district["figures"]  # a city sums its districts

    # As it stood on 20 November: the adjustment, the deregistration and the shop came later.
    november = await figures(projector, HEPING, start=date(2026, 11, 1), end=date(2026, 11, 30))
    assert november["as_of"] == "2026-11-30"
    assert (november["figures"]["service.hours"], november["figures"]["volunteers.registered"]) == (2.0, 2)
    assert "points.redeemed" not in november["figures"] and november["figures"]["points.issued"] == 20
    assert november["period"]["figures"]["sites.level.station"] == 1  # two opened, one closed
    december = await figures(projector, HEPING, start=date(2026, 12, 1), end=date(2026, 12, 31))
    assert december["period"]["figures"] == {
        "points.issued": -5, "points.redeemed": 10, "service.hours": -0.5, "volunteers.age_band.35_59": -1,
        "volunteers.deregistered": 1, "volunteers.gender.female": -1, "volunteers.political_status.masses": -1,
        "volunteers.registered": -1,
    }  # fmt: skip


async def test_the_same_events_in_any_interleaving_of_the_streams_give_the_same_figures(projector) -> None:
    city = a_city()
    await apply(projector, 1, [e for c in ("registry", "dispatch", "points") for e in city.by_context[c]], batch=1000)
    rng = random.Random(7)
    for generation, batch in ((2, 3), (3, 1), (4, 7)):
        # Merge the three streams in a random interleaving, each stream's own order kept.
        queues = {c: list(events) for c, events in city.by_context.items()}
        merged = []
        while any(queues.values()):
            context = rng.choice([c for c, q in queues.items() if q])
            merged.append(queues[context].pop(0))
        async with writing(projector.engine) as conn:
            tables = projector.projection.tables(generation)
            await conn.run_sync(lambda sync: tables[0].metadata.create_all(sync, tables=list(tables)))
        await apply(projector, generation, merged, batch)
    totals = []
    for generation in (1, 2, 3, 4):
        counters = projector.projection.figure_tables(generation).counters
        async with projector.engine.connect() as conn:
            rows = await conn.execute(
                select(counters.c.node_code, counters.c.figure, counters.c.day, func.sum(counters.c.value))
                .group_by(counters.c.node_code, counters.c.figure, counters.c.day)
                .having(func.sum(counters.c.value) != 0)
            )
            totals.append(sorted(tuple(row) for row in rows))
    assert totals[0] and totals[1] == totals[0] and totals[2] == totals[0] and totals[3] == totals[0]


async def all_tables(projector: Projector, generation: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a generation, counters summed per (node, figure, day) where not zero."""
    tables = projector.projection.figure_tables(generation)
    found: dict[str, list[tuple[Any, ...]]] = {}
    async with projector.engine.connect() as conn:
        for table in tables.all():
            if table is tables.counters:
                c = table.c
                query = (
                    select(c.node_code, c.figure, c.day, func.sum(c.value))
                    .group_by(c.node_code, c.figure, c.day)
                    .having(func.sum(c.value) != 0)
                )
            else:
                query = select(table)
            found[table.name.rsplit("_g", 1)[0]] = sorted(tuple(row) for row in await conn.execute(query))
    return found


async def test_dispatch_and_points_split_by_district_in_any_interleaving_give_the_same_figures(projector) -> None:
    # What partitions do: each district of dispatch and of points folded apart (in its stream
    # order), side by side with registry whole, while volunteers move between districts and serve
    # hours in districts other than their own.
    city = a_city_of_districts()
    assert Figures.partitioned == ("dispatch", "points")
    await apply(projector, 1, [e for c in ("registry", "dispatch", "points") for e in city.by_context[c]], batch=50)
    rng = random.Random(11)
    for generation, batch in ((2, 1), (3, 9), (4, 40)):
        queues = [list(city.by_context["registry"])]
        for context in Figures.partitioned:
            for district in sorted({envelope.org_path[0] for envelope, _ in city.by_context[context]}):
                queues.append([e for e in city.by_context[context] if e[0].org_path[0] == district])
        merged = []
        while any(queues):
            merged.append(rng.choice([q for q in queues if q]).pop(0))
        async with writing(projector.engine) as conn:
            tables = projector.projection.tables(generation)
            await conn.run_sync(lambda sync, tables=tables: tables[0].metadata.create_all(sync, tables=list(tables)))
        await apply(projector, generation, merged, batch)
    whole = await all_tables(projector, 1)
    assert whole["members"] and whole["member_hours"] and whole["orders"]
    for generation in (2, 3, 4):
        assert await all_tables(projector, generation) == whole
    # A transfer moved the counts: every district's volunteers are those who live there now.
    homes: dict[str, str] = {}
    for envelope, event in city.by_context["registry"]:
        if isinstance(event, (r.VolunteerRegistered, r.VolunteerTransferred)):
            homes[event.volunteer_number] = envelope.org_path[0]
        elif isinstance(event, r.VolunteerDeregistered):
            homes.pop(event.volunteer_number)
    for district in sorted(set(homes.values())):
        registered_there = (await figures(projector, district))["figures"]["volunteers.registered"]
        assert registered_there == sum(1 for home in homes.values() if home == district)


async def test_dispatch_and_points_cut_into_ranges_written_in_any_order_give_the_same_figures(projector) -> None:
    # What a rebuild in processes does: dispatch's and points' streams cut into ranges, each range
    # folded in its order a transaction at a time, the transactions of all ranges (and registry's)
    # written in any order among them: an order's dispatch, re-dispatch or acceptance may be
    # written before its placing, and a re-dispatch before the first dispatch.
    city = a_city_of_districts()
    await apply(projector, 1, [e for c in ("registry", "dispatch", "points") for e in city.by_context[c]], batch=50)
    whole = await all_tables(projector, 1)
    assert any(row[-4] is not None for row in whole["orders"])  # some dispatched
    rng = random.Random(5)
    for generation, batch in ((2, 1), (3, 4), (4, 16)):
        queues = [list(city.by_context["registry"])]
        for context in Figures.partitioned:
            events = list(city.by_context[context])
            while events:
                cut = rng.randint(1, 12)
                queues.append(events[:cut])
                events = events[cut:]
        async with writing(projector.engine) as conn:
            tables = projector.projection.tables(generation)
            await conn.run_sync(lambda sync, tables=tables: tables[0].metadata.create_all(sync, tables=list(tables)))
        while any(queues):
            queue = rng.choice([q for q in queues if q])
            written, queue[:] = queue[:batch], queue[batch:]
            await apply(projector, generation, written, batch)
        assert await all_tables(projector, generation) == whole


async def test_an_unknown_node_is_not_found(projector) -> None:
    with pytest.raises(NotFound):
        await figures(projector, "999999")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026", (date(2026, 1, 1), date(2026, 12, 31))),
        ("2026-02", (date(2026, 2, 1), date(2026, 2, 28))),
        ("2026-11-23", (date(2026, 11, 23),) * 2),
    ],
)
def test_a_period_is_a_year_a_month_or_a_day(text: str, expected: tuple[date, date]) -> None:
    assert period_of(text) == expected


@pytest.mark.parametrize("text", ["26", "2026-13", "2026-02-30", "last week"])
def test_a_period_that_is_none_of_those_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(Invalid) as refused:
        period_of(text)
    assert refused.value.field == "period"


async def test_party_member_targets_name_who_falls_short(projector) -> None:
    city = a_city()
    # A second party member at 和平, with 26 hours this year but not reported in.
    city.add(registered(4, party=True), "V00000004", AT_HEPING, NOV_2)
    record = dict(record_id="R00000002", volunteer_number="V00000004", activity_id="A00000001", shift_id=None, site_id="ST-HEPING", field="civilised_traffic", group_served="public_needs", service_date=NOV_20, source="admin_entry")  # fmt: skip
    city.add(
        d.ServiceHoursConfirmed(**record, minutes=26 * 60, hours=Decimal(26), at=on(NOV_20)),
        "R00000002",
        AT_HEPING,
        NOV_20,
    )
    for context in ("points", "dispatch", "registry"):
        await apply(projector, 1, city.by_context[context], batch=4)

    generation = await projector.active_generation()
    targets = await party_targets(projector.engine, projector.projection, generation, HEPING, 2026)
    assert (targets["party_members"], targets["registered"]["count"], targets["registered"]["share"]) == (500, 2, 0.004)
    assert targets["with_25_hours"] == {"count": 1, "share": 0.5}
    assert targets["reported_in"] == {"count": 1, "share": 0.5, "target": 0.7}
    assert targets["falling_short"] == [
        {"volunteer_number": "V00000001", "reported_in": True, "hours": 1.5},
        {"volunteer_number": "V00000004", "reported_in": False, "hours": 26.0},
    ]
    assert (await party_targets(projector.engine, projector.projection, generation, XINGFU, 2026))["registered"][
        "count"
    ] == 0
    assert (await party_targets(projector.engine, projector.projection, generation, CITY, 2026))["registered"][
        "count"
    ] == 2
    assert (await party_targets(projector.engine, projector.projection, generation, HEPING, 2025))["with_25_hours"][
        "count"
    ] == 0


async def test_times_to_dispatch_and_accept_are_medians_and_90th_percentiles_of_the_orders_placed(projector) -> None:
    s = Streams()
    s.add(
        r.OrgUnitCreated(
            code=DISTRICT, parent_code=CITY, level="district", name="张店区", population=1, party_members=1
        ),
        DISTRICT,
        (DISTRICT,),
        NOV_2,
    )
    placed = on(NOV_20)
    window = dict(window_start=on(DEC_5), window_end=on(date(2026, 12, 6)))
    for n, (to_dispatch, to_accept) in enumerate([(10, 30), (20, 60), (30, None), (40, 50), (None, None)], start=1):
        order_id = f"O{n:08d}"
        s.add(d.OrderPlaced(order_id=order_id, kind="order", group_served="elderly", field="legal_aid", community_code=HEPING, site_id="ST-HEPING", headcount=1, placed_via="resident", placed_at=placed, **window), order_id, AT_HEPING, NOV_20)  # fmt: skip
        if to_dispatch is not None:
            at = placed + timedelta(minutes=to_dispatch)
            s.add(
                d.OrderDispatched(
                    order_id=order_id,
                    volunteer_numbers=["V00000001"],
                    site_id="ST-HEPING",
                    deadline=at + timedelta(hours=1),
                    attempt=1,
                    at=at,
                ),
                order_id,
                AT_HEPING,
                NOV_20,
            )
            # A re-dispatch later changes nothing: the first counts.
            s.add(
                d.OrderDispatched(
                    order_id=order_id,
                    volunteer_numbers=["V00000002"],
                    site_id="ST-HEPING",
                    deadline=at + timedelta(hours=2),
                    attempt=2,
                    at=at + timedelta(hours=1),
                    automatic=True,
                ),
                order_id,
                AT_HEPING,
                NOV_20,
            )
        if to_accept is not None:
            s.add(
                d.OrderAccepted(
                    order_id=order_id, accepted_by="V00000002", attempt=2, at=placed + timedelta(minutes=to_accept)
                ),
                order_id,
                AT_HEPING,
                NOV_20,
            )
    await apply(projector, 1, s.by_context["registry"] + s.by_context["dispatch"], batch=6)

    generation = await projector.active_generation()
    times = await order_times(
        projector.engine, projector.projection, generation, DISTRICT, start=NOV_2, end=date(2026, 11, 30)
    )
    assert times["placed"] == 5
    assert times["time_to_dispatch"] == {"count": 4, "median_minutes": 20.0, "p90_minutes": 40.0}
    assert times["time_to_accept"] == {"count": 3, "median_minutes": 50.0, "p90_minutes": 60.0}
    december = await order_times(projector.engine, projector.projection, generation, DISTRICT, start=DEC_5, end=None)
    assert december["placed"] == 0 and december["time_to_dispatch"]["median_minutes"] is None


async def test_an_order_whose_placing_never_came_is_not_timed(projector) -> None:
    s = Streams()
    s.add(r.OrgUnitCreated(code=CITY, parent_code=None, level="city", name="淄博市", population=1, party_members=1), CITY, (CITY,), NOV_2)  # fmt: skip
    placed = on(NOV_20)
    window = dict(window_start=on(DEC_5), window_end=on(date(2026, 12, 6)))
    s.add(d.OrderPlaced(order_id="O00000001", kind="order", group_served="elderly", field="legal_aid", community_code=HEPING, site_id="ST-HEPING", headcount=1, placed_via="resident", placed_at=placed, **window), "O00000001", AT_HEPING, NOV_20)  # fmt: skip
    for order_id in ("O00000001", "O00000002"):  # the second one's placing was dead-lettered
        s.add(d.OrderDispatched(order_id=order_id, volunteer_numbers=["V00000001"], site_id="ST-HEPING", deadline=placed + timedelta(hours=1), attempt=1, at=placed + timedelta(minutes=10)), order_id, AT_HEPING, NOV_20)  # fmt: skip
    await apply(projector, 1, s.by_context["registry"] + s.by_context["dispatch"], batch=10)

    generation = await projector.active_generation()
    times = await order_times(projector.engine, projector.projection, generation, CITY, start=None, end=None)
    assert times["placed"] == 1
    assert times["time_to_dispatch"] == {"count": 1, "median_minutes": 10.0, "p90_minutes": 10.0}


async def test_coverage_counts_the_communities_with_a_station_and_with_a_team(projector) -> None:
    city = a_city()
    for context in ("registry", "dispatch", "points"):
        await apply(projector, 1, city.by_context[context], batch=10)
    coverage = (await figures(projector, STREET))["coverage"]
    # 和平 has a station (one of its two closed) and a team; 幸福 has neither.
    assert coverage == {
        "communities": 2,
        "with_station": {"count": 1, "share": 0.5},
        "with_team": {"count": 1, "share": 0.5},
    }
    assert (await figures(projector, CITY))["coverage"]["communities"] == 2
    assert (await figures(projector, XINGFU))["coverage"] == {
        "communities": 1,
        "with_station": {"count": 0, "share": 0.0},
        "with_team": {"count": 0, "share": 0.0},
    }
    before = (await figures(projector, STREET, end=date(2026, 11, 1)))["coverage"]  # before anything opened
    assert before["with_station"]["count"] == 0


async def test_top_volunteers_rank_by_confirmed_hours_in_the_year(projector) -> None:
    city = a_city()
    for n, hours in ((5, 7), (6, 12)):
        city.add(registered(n), f"V{n:08d}", AT_HEPING, NOV_2)
        record = dict(record_id=f"R0000001{n}", volunteer_number=f"V{n:08d}", activity_id="A00000001", shift_id=None, site_id="ST-HEPING", field="civilised_traffic", group_served="public_needs", service_date=NOV_20, source="admin_entry")  # fmt: skip
        city.add(
            d.ServiceHoursConfirmed(**record, minutes=hours * 60, hours=Decimal(hours), at=on(NOV_20)),
            f"R0000001{n}",
            AT_HEPING,
            NOV_20,
        )
    for context in ("dispatch", "registry", "points"):
        await apply(projector, 1, city.by_context[context], batch=8)
    generation = await projector.active_generation()
    top = await top_volunteers(projector.engine, projector.projection, generation, STREET, 2026, 2)
    assert top["volunteers"] == [
        {"rank": 1, "volunteer_number": "V00000006", "hours": 12.0},
        {"rank": 2, "volunteer_number": "V00000005", "hours": 7.0},
    ]
    everyone = await top_volunteers(projector.engine, projector.projection, generation, HEPING, 2026, 10)
    assert [v["volunteer_number"] for v in everyone["volunteers"]] == ["V00000006", "V00000005", "V00000001"]
    assert (await top_volunteers(projector.engine, projector.projection, generation, XINGFU, 2026, 10))[
        "volunteers"
    ] == []


async def test_orders_overdue_at_the_end_of_a_day_are_those_not_accepted_in_their_window_or_not_done_by_its_end(
    projector,
) -> None:
    s = Streams()
    s.add(
        r.OrgUnitCreated(
            code=DISTRICT, parent_code=CITY, level="district", name="张店区", population=1, party_members=1
        ),
        DISTRICT,
        (DISTRICT,),
        NOV_2,
    )
    for code, parent, level in (
        (STREET, DISTRICT, "street"),
        (HEPING, STREET, "community"),
        (XINGFU, STREET, "community"),
    ):
        path = (DISTRICT, STREET, code)[: 2 if level == "street" else 3]
        s.add(
            r.OrgUnitCreated(code=code, parent_code=parent, level=level, name=code, population=1, party_members=1),
            code,
            path,
            NOV_2,
        )
    window = dict(window_start=on(NOV_20), window_end=on(DEC_5))
    nov_19, nov_21 = date(2026, 11, 19), date(2026, 11, 21)
    for n in (1, 2, 3, 4):
        order_id = f"O{n:08d}"
        s.add(d.OrderPlaced(order_id=order_id, kind="order", group_served="elderly", field="legal_aid", community_code=HEPING, site_id="ST-HEPING", headcount=1, placed_via="resident", placed_at=on(NOV_2), **window), order_id, AT_HEPING, NOV_2)  # fmt: skip
    # 1: nobody ever accepts it. 2: accepted, never completed. 3: cancelled. 4: accepted and completed.
    s.add(
        d.OrderAccepted(order_id="O00000002", accepted_by="V00000001", attempt=1, at=on(nov_19)),
        "O00000002",
        AT_HEPING,
        nov_19,
    )
    s.add(d.OrderCancelled(order_id="O00000003", reason="not_needed", at=on(nov_21)), "O00000003", AT_HEPING, nov_21)
    s.add(
        d.OrderAccepted(order_id="O00000004", accepted_by="V00000001", attempt=1, at=on(nov_19)),
        "O00000004",
        AT_HEPING,
        nov_19,
    )
    s.add(d.OrderCompleted(order_id="O00000004", people_served=1, at=on(nov_21)), "O00000004", AT_HEPING, nov_21)
    await apply(projector, 1, s.by_context["registry"] + s.by_context["dispatch"], batch=3)

    async def overdue(code: str, end: date) -> int:
        return (await figures(projector, code, end=end))["figures"].get("orders.overdue", 0)

    assert await overdue(DISTRICT, nov_19) == 0  # no window open yet
    assert await overdue(DISTRICT, NOV_20) == 2  # 1 and 3: their window opened, nobody accepted
    assert await overdue(STREET, date(2026, 11, 30)) == 1  # 3 was cancelled
    assert await overdue(HEPING, DEC_5) == 2  # and 2 was not done by the window's end
    assert await overdue(XINGFU, DEC_5) == 0
    assert (await figures(projector, DISTRICT, end=DEC_5))["figures"]["orders.cancelled"] == 1


async def test_top_teams_rank_by_their_members_confirmed_hours_in_the_year(projector) -> None:
    city = a_city()
    for n, hours in ((5, 7), (6, 12)):
        city.add(registered(n), f"V{n:08d}", AT_HEPING, NOV_2)
        record = dict(record_id=f"R0000001{n}", volunteer_number=f"V{n:08d}", activity_id="A00000001", shift_id=None, site_id="ST-HEPING", field="civilised_traffic", group_served="public_needs", service_date=NOV_20, source="admin_entry")  # fmt: skip
        city.add(
            d.ServiceHoursConfirmed(**record, minutes=hours * 60, hours=Decimal(hours), at=on(NOV_20)),
            f"R0000001{n}",
            AT_HEPING,
            NOV_20,
        )
    team = dict(site_id="ST-HEPING", kind="general", capacity=30)
    city.add(
        r.TeamCreated(team_id="T00000002", name="红马甲", leader_number="V00000002", **team),
        "T00000002",
        AT_XINGFU,
        NOV_2,
    )
    city.add(
        r.TeamMemberJoined(team_id="T00000002", volunteer_number="V00000005", via="application"),
        "T00000002",
        AT_XINGFU,
        NOV_2,
    )
    city.add(
        r.TeamMemberJoined(team_id="T00000002", volunteer_number="V00000006", via="invitation"),
        "T00000002",
        AT_XINGFU,
        NOV_2,
    )
    city.add(r.TeamMemberLeft(team_id="T00000002", volunteer_number="V00000006"), "T00000002", AT_XINGFU, NOV_20)
    city.add(
        r.TeamCreated(team_id="T00000003", name="已解散", leader_number="V00000006", **team),
        "T00000003",
        AT_HEPING,
        NOV_2,
    )
    city.add(r.TeamDissolved(team_id="T00000003", reason="merged"), "T00000003", AT_HEPING, NOV_20)
    for context in ("dispatch", "registry", "points"):
        await apply(projector, 1, city.by_context[context], batch=4)
    generation = await projector.active_generation()

    top = await top_teams(projector.engine, projector.projection, generation, STREET, 2026, 10)
    assert top["teams"] == [
        {"rank": 1, "team_id": "T00000002", "name": "红马甲", "kind": "general", "members": 2, "hours": 7.0},
        {"rank": 2, "team_id": "T00000001", "name": "夕阳红", "kind": "general", "members": 1, "hours": 1.5},
    ]
    assert [
        t["team_id"]
        for t in (await top_teams(projector.engine, projector.projection, generation, HEPING, 2026, 10))["teams"]
    ] == ["T00000001"]
    assert (await top_teams(projector.engine, projector.projection, generation, STREET, 2025, 1))["teams"][0][
        "hours"
    ] == 0.0


async def test_on_postgresql_a_batch_reads_its_rows_by_key_not_by_reading_the_whole_table(
    postgres_admin_url: str,
) -> None:
    """A rebuild writes into new tables, which are not analysed while it runs: a batch's rows
    (here the volunteers it deregisters) asked for as a list of keys were found by reading the
    whole table, again for every batch as the table grew. Each key is looked up by the index."""
    async with throwaway_database(postgres_admin_url) as url:
        projector = Projector(Figures(), make_engine(url))
        await projector.setup()
        try:
            joined = [
                (envelope, catalog.payload_of(envelope)) for envelope in map(registered_envelope, range(1, 20_001))
            ]
            await apply(projector, 1, joined, batch=5000)
            members = projector.projection.figure_tables(1).members.name
            async with reading(projector.engine) as conn:
                never_analysed = text("SELECT reltuples FROM pg_class WHERE relname = :name")
                assert await conn.scalar(never_analysed, {"name": members}) < 0
            left = [
                (
                    catalog.envelope(
                        gone, aggregate_id=gone.volunteer_number, aggregate_version=2, org_path=PATH, actor="test"
                    ),
                    gone,
                )
                for gone in (
                    r.VolunteerDeregistered(volunteer_number=f"V{n:08d}", on_request=False)
                    for n in range(1, 20_001, 50)
                )
            ]

            def reads_members(statement: str) -> bool:
                return statement.lstrip().startswith("SELECT") and members in statement

            with statements_sent(projector.engine, reads_members) as statements:
                await apply(projector, 1, left, batch=len(left))
            counters = projector.projection.figure_tables(1).counters
            async with reading(projector.engine) as conn:
                deregistered = await conn.scalar(
                    select(func.sum(counters.c.value)).where(
                        counters.c.figure == "volunteers.deregistered", counters.c.node_code == PATH[-1]
                    )
                )
            assert deregistered == 400  # each volunteer's row was found
            assert statements
            for statement, parameters in statements:
                plan = await plan_of(projector.engine, statement, parameters)
                assert '"Node Type": "Seq Scan"' not in plan, plan
                assert f'"Index Name": "{members}_pkey"' in plan, plan
        finally:
            await projector.engine.dispose()
