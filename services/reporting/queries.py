"""Reading figures for a node of the org tree from the active generation: as of a day, and
what happened in a period."""

from __future__ import annotations

import math
import re
from calendar import monthrange
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.projection import Delta, Figures
from shared.bus import stream_name
from shared.catalog import EventRejected, catalog
from shared.citytime import CITY_ZONE, city_date
from shared.db import reading
from shared.envelope import utcnow
from shared.errors import Invalid, NotFound
from shared.replay import read_stream

# The figures a dashboard shows for every node and its children.
HEADLINE = (
    "volunteers.registered", "activities", "participations", "service.centihours", "orders.placed",
    "orders.completed", "orders.people_served", "points.issued", "points.redeemed",
)  # fmt: skip

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def period_of(text: str) -> tuple[date, date]:
    """A year (2026), a month (2026-11) or a day (2026-11-23): its first and last day."""
    match = _PERIOD.match(text)
    if not match:
        raise Invalid("a period is a year, a month or a day: 2026, 2026-11 or 2026-11-23", field="period")
    year, month, day = (int(part) if part else None for part in match.groups())
    try:
        if day is not None:
            first = last = date(year, month, day)
        elif month is not None:
            first, last = date(year, month, 1), date(year, month, monthrange(year, month)[1])
        else:
            first, last = date(year, 1, 1), date(year, 12, 31)
    except ValueError as error:
        raise Invalid(f"no such period: {error}", field="period") from None
    return first, last


def _shaped(values: dict[str, int]) -> dict[str, Any]:
    """The figures that are not zero (a zero may or may not have a row, depending on how the
    events fell into batches); hours are counted in hundredths, said in hours."""
    shaped: dict[str, Any] = {}
    for figure, value in sorted(values.items()):
        if not value:
            continue
        if figure == "service.centihours":
            shaped["service.hours"] = value / 100
        else:
            shaped[figure] = value
    return shaped


async def figures_for(
    engine: AsyncEngine,
    projection: Figures,
    generation: int,
    code: str,
    *,
    start: date | None = None,
    end: date | None = None,
    moment: datetime | None = None,
    part_of_day: Delta | None = None,
) -> dict[str, Any]:
    """Every figure of a node as of `end` (all of time when absent), and, given `start`, what
    happened from `start` to `end`. Counters are kept from the district down; a city sums its
    districts. `part_of_day` adds the changes of the day after `end` up to `moment` (see
    `figures_at`)."""
    t = projection.figure_tables(generation)
    nodes, counters = t.nodes, t.counters
    async with reading(engine) as conn:
        node = (await conn.execute(select(nodes).where(nodes.c.code == code))).mappings().first()
        if node is None:
            raise NotFound(f"unknown org unit {code}")
        if node["level"] == "city":
            codes = set(await conn.scalars(select(nodes.c.code).where(nodes.c.parent_code == code)))
        else:
            codes = {code}
        where = counters.c.node_code.in_(sorted(codes))
        if end is not None:
            where = where & (counters.c.day <= end)
        totals = select(counters.c.figure, func.sum(counters.c.value)).group_by(counters.c.figure)
        as_of = {figure: int(total) for figure, total in await conn.execute(totals.where(where))}
        for (node_code, figure, _day), change in (part_of_day or {}).items():
            if node_code in codes:
                as_of[figure] = as_of.get(figure, 0) + change
        at = moment or (datetime.combine(end + timedelta(days=1), time(), CITY_ZONE) if end else utcnow())
        as_of["orders.overdue"] = await _overdue(conn, t, code if node["level"] != "city" else None, at)
        in_period = None
        if start is not None:
            rows = await conn.execute(totals.where(where & (counters.c.day >= start)))
            in_period = {figure: int(total) for figure, total in rows}
        coverage = await _coverage(conn, t, code, end)
    registered = as_of.get("volunteers.registered", 0)
    population = node["population"]
    answer: dict[str, Any] = {
        "code": code,
        "name": node["name"],
        "level": node["level"],
        "population": population,
        "party_members": node["party_members"],
        "as_of": moment.isoformat() if moment else end.isoformat() if end else None,
        "figures": _shaped(as_of),
        "volunteer_share_of_population": registered / population if population else None,
    }
    answer["coverage"] = coverage
    if in_period is not None:
        answer["period"] = {
            "from": start.isoformat(),
            "to": end.isoformat() if end else None,
            "figures": _shaped(in_period),
        }
    return answer


# A message is stored when its event is published, after it occurred: read from a little before
# the day starts, in case the services' clocks run ahead of the NATS server's.
_CLOCK_SLACK = timedelta(minutes=5)


async def figures_at(
    engine: AsyncEngine, projection: Figures, generation: int, nc: Client, code: str, moment: datetime
) -> dict[str, Any]:
    """Every figure of a node as it stood at `moment`: the counters of the days before its
    city day, plus that day's events up to the moment, replayed from the streams and folded
    without being stored (what had occurred by then, however late it was recorded). A
    volunteer, site or team changed that day is read as it stands now (see `Tally`).

    Replaying reads every message stored since that day began: a moment long past costs a
    read of the streams from then on."""
    if moment.tzinfo is None:
        raise Invalid("a moment carries its time zone, e.g. 2026-11-23T15:30:00+08:00", field="at")
    day = city_date(moment)
    midnight = datetime.combine(day, time(), CITY_ZONE)
    js = nc.jetstream()
    async with reading(engine) as conn:
        tally = projection.tally(conn, generation, rows_as_of_now=True)
        for context in projection.contexts:
            try:
                state = (await js.stream_info(stream_name(context))).state
            except NotFoundError:
                continue
            if not state.messages:
                continue
            last = await js.get_msg(stream_name(context), state.last_seq)
            if last.time is not None and last.time < midnight - _CLOCK_SLACK:
                continue  # nothing stored since the day began: no reader would ever deliver
            async for batch in read_stream(
                nc, stream_name(context), since=midnight - _CLOCK_SLACK, stop=state.last_seq
            ):
                events = []
                for msg in batch:
                    try:
                        header = catalog.parse_header(msg.data)
                        if projection.handles(header.type) and midnight <= header.occurred_at <= moment:
                            events.append((header, catalog.payload_under(header)))
                    except EventRejected:
                        continue  # the projection's own reader parks it, with the reason
                await tally.fold(events)
    return await figures_for(
        engine, projection, generation, code, end=day - timedelta(days=1), moment=moment, part_of_day=tally.delta
    )


async def _overdue(conn: Any, t: Any, code: str | None, at: datetime) -> int:
    """Orders of a node (None: the city's) overdue at `at`, neither cancelled nor completed by
    then: nobody had accepted one whose window had opened, or one accepted was not completed by
    the end of its window. (Dispatch lists its own overdue orders for staff, by the same rule.)"""
    o = t.orders.c

    def by(column: Any) -> Any:
        return column.is_not(None) & (column <= at)

    overdue = (
        ~by(o.cancelled_at)
        & ~by(o.completed_at)
        & ((~by(o.accepted_at) & (o.window_start <= at)) | (by(o.accepted_at) & (o.window_end <= at)))
        & (o.placed_at <= at)
    )
    query = select(func.count()).select_from(t.orders).where(overdue)
    if code is not None:
        query = query.where(("/" + o.org_path + "/").contains(f"/{code}/"))
    return int(await conn.scalar(query) or 0)


async def _coverage(conn: Any, t: Any, code: str, end: date | None) -> dict[str, Any]:
    """Of the communities under a node: how many have an open station, and at least one team."""
    tree = {
        row.code: (row.parent_code, row.level)
        for row in await conn.execute(select(t.nodes.c.code, t.nodes.c.parent_code, t.nodes.c.level))
    }

    def under(community: str) -> bool:
        node: str | None = community
        while node is not None:
            if node == code:
                return True
            node = tree.get(node, (None, None))[0]
        return False

    communities = [c for c, (_, level) in tree.items() if level == "community" and under(c)]
    counters = t.counters
    query = (
        select(counters.c.node_code, counters.c.figure, func.sum(counters.c.value))
        .where(counters.c.node_code.in_(communities), counters.c.figure.in_(["sites.level.station", "teams"]))
        .group_by(counters.c.node_code, counters.c.figure)
    )
    if end is not None:
        query = query.where(counters.c.day <= end)
    having = {(node, figure) for node, figure, total in await conn.execute(query) if total > 0}

    def part(figure: str) -> dict[str, Any]:
        count = sum(1 for c in communities if (c, figure) in having)
        return {"count": count, "share": round(count / len(communities), 4) if communities else None}

    return {"communities": len(communities), "with_station": part("sites.level.station"), "with_team": part("teams")}


# Huiji's targets for party members (DOMAIN.md): registered volunteers, hours, report-in.
REGISTERED_TARGET = 0.6
REPORTED_IN_TARGET = 0.7
HOURS_A_YEAR = 25


async def party_targets(
    engine: AsyncEngine, projection: Figures, generation: int, code: str, year: int
) -> dict[str, Any]:
    """The party-member targets at a node: registered party-member volunteers as a share of its
    party members, the share with 25 hours in `year`, the share reported in to their community,
    and who falls short (by volunteer number: reports carry no names)."""
    t = projection.figure_tables(generation)
    async with reading(engine) as conn:
        node = (await conn.execute(select(t.nodes).where(t.nodes.c.code == code))).mappings().first()
        if node is None:
            raise NotFound(f"unknown org unit {code}")
        m, h = t.members.c, t.member_hours.c
        query = (
            select(m.volunteer_number, m.reported_in, func.coalesce(h.centihours, 0))
            .select_from(
                t.members.outerjoin(t.member_hours, (h.volunteer_number == m.volunteer_number) & (h.year == year))
            )
            .where(m.active == 1, m.political_status == "party_member")
            .order_by(m.volunteer_number)
        )
        if node["level"] != "city":
            query = query.where(("/" + m.org_path + "/").contains(f"/{code}/"))
        rows = (await conn.execute(query)).all()
    registered = len(rows)
    with_hours = sum(1 for _, _, centihours in rows if centihours >= HOURS_A_YEAR * 100)
    reported_in = sum(1 for _, reported, _ in rows if reported)

    def share(count: int, of: int) -> float | None:
        return round(count / of, 4) if of else None

    return {
        "code": code,
        "year": year,
        "party_members": node["party_members"],
        "registered": {
            "count": registered,
            "share": share(registered, node["party_members"]),
            "target": REGISTERED_TARGET,
        },
        "with_25_hours": {"count": with_hours, "share": share(with_hours, registered)},
        "reported_in": {"count": reported_in, "share": share(reported_in, registered), "target": REPORTED_IN_TARGET},
        "falling_short": [
            {"volunteer_number": number, "reported_in": bool(reported), "hours": centihours / 100}
            for number, reported, centihours in rows
            if not reported or centihours < HOURS_A_YEAR * 100
        ],
    }


def percentile(sorted_values: list[float], share: float) -> float | None:
    """The nearest-rank percentile of values already in order (None for none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


async def order_times(
    engine: AsyncEngine, projection: Figures, generation: int, code: str, *, start: date | None, end: date | None
) -> dict[str, Any]:
    """Of the orders placed at a node in a period: how many were dispatched and accepted, and
    the minutes from placing to each (median and 90th percentile)."""
    t = projection.figure_tables(generation)
    async with reading(engine) as conn:
        node = (await conn.execute(select(t.nodes).where(t.nodes.c.code == code))).mappings().first()
        if node is None:
            raise NotFound(f"unknown org unit {code}")
        o = t.orders.c
        # Not a row whose placing was never folded (its event dead-lettered): no time to count from.
        query = select(o.placed_at, o.dispatched_at, o.accepted_at).where(o.placed_at.is_not(None))
        if node["level"] != "city":
            query = query.where(("/" + o.org_path + "/").contains(f"/{code}/"))
        if start is not None:
            query = query.where(o.placed_on >= start)
        if end is not None:
            query = query.where(o.placed_on <= end)
        rows = (await conn.execute(query)).all()

    def minutes(pairs: list[tuple[datetime, datetime | None]]) -> dict[str, Any]:
        values = sorted((later - placed).total_seconds() / 60 for placed, later in pairs if later is not None)
        return {
            "count": len(values),
            "median_minutes": percentile(values, 0.5),
            "p90_minutes": percentile(values, 0.9),
        }

    return {
        "code": code,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "placed": len(rows),
        "time_to_dispatch": minutes([(placed, dispatched) for placed, dispatched, _ in rows]),
        "time_to_accept": minutes([(placed, accepted) for placed, _, accepted in rows]),
    }


async def node_path(conn: Any, nodes: Any, code: str) -> tuple[str, ...] | None:
    """Where a node stands in the tree: the codes from the district down to it (the city's own
    node has none: every path starts below the city, see shared/auth.py); None for a code the
    tree does not have."""
    path: list[str] = []
    node: str | None = code
    while node is not None and len(path) <= 10:  # a tree is a few levels deep: a loop is broken data
        row = (await conn.execute(select(nodes.c.parent_code, nodes.c.level).where(nodes.c.code == node))).first()
        if row is None:
            return None if node == code else tuple(reversed(path))
        if row.level == "city":
            break
        path.append(node)
        node = row.parent_code
    return tuple(reversed(path))


async def _node(conn: Any, nodes: Any, code: str) -> Any:
    node = (await conn.execute(select(nodes).where(nodes.c.code == code))).mappings().first()
    if node is None:
        raise NotFound(f"unknown org unit {code}")
    return node


async def trend(
    engine: AsyncEngine,
    projection: Figures,
    generation: int,
    code: str,
    figure: str,
    *,
    start: date,
    end: date,
    by: str,
) -> dict[str, Any]:
    """What one figure changed by in each day or month from `start` to `end` (zeros included),
    and where it stood at the end of each."""
    t = projection.figure_tables(generation)
    counters = t.counters
    async with reading(engine) as conn:
        node = await _node(conn, t.nodes, code)
        if node["level"] == "city":
            where = counters.c.node_code.in_(select(t.nodes.c.code).where(t.nodes.c.parent_code == code))
        else:
            where = counters.c.node_code == code
        where = where & (counters.c.figure == figure)
        before = await conn.scalar(
            select(func.coalesce(func.sum(counters.c.value), 0)).where(where, counters.c.day < start)
        )
        rows = await conn.execute(
            select(counters.c.day, func.sum(counters.c.value))
            .where(where, counters.c.day >= start, counters.c.day <= end)
            .group_by(counters.c.day)
        )
        by_day = {day: int(value) for day, value in rows}
    buckets: dict[str, int] = {}
    day = start
    while day <= end:
        key = day.isoformat() if by == "day" else day.isoformat()[:7]
        buckets[key] = buckets.get(key, 0) + by_day.get(day, 0)
        day = date.fromordinal(day.toordinal() + 1)
    points, level = [], int(before)
    scale = 100 if figure == "service.centihours" else 1
    for key, change in buckets.items():
        level += change
        points.append({"period": key, "change": change / scale, "level": level / scale})
    return {"code": code, "figure": "service.hours" if scale == 100 else figure, "by": by, "points": points}


async def children(
    engine: AsyncEngine, projection: Figures, generation: int, code: str, figures: Sequence[str]
) -> dict[str, Any]:
    """A node's children (districts of a city, streets of a district, …) with a few figures each."""
    t = projection.figure_tables(generation)
    async with reading(engine) as conn:
        node = await _node(conn, t.nodes, code)
        kids = (
            (await conn.execute(select(t.nodes).where(t.nodes.c.parent_code == code).order_by(t.nodes.c.code)))
            .mappings()
            .all()
        )
        rows = await conn.execute(
            select(t.counters.c.node_code, t.counters.c.figure, func.sum(t.counters.c.value))
            .where(t.counters.c.node_code.in_([k["code"] for k in kids]), t.counters.c.figure.in_(list(figures)))
            .group_by(t.counters.c.node_code, t.counters.c.figure)
        )
        values: dict[str, dict[str, int]] = {}
        for node_code, figure, total in rows:
            values.setdefault(node_code, {})[figure] = int(total)
    return {
        "code": code,
        "name": node["name"],
        "level": node["level"],
        "parent_code": node["parent_code"],
        "children": [
            {
                "code": k["code"],
                "name": k["name"],
                "level": k["level"],
                "population": k["population"],
                "figures": _shaped(values.get(k["code"], {})),
            }
            for k in kids
        ],
    }


async def top_teams(
    engine: AsyncEngine, projection: Figures, generation: int, code: str, year: int, limit: int
) -> dict[str, Any]:
    """The active teams of a node with the most confirmed hours in `year`: a team's hours are
    those its members of now served that year (in the team or not: records name no team)."""
    t = projection.figure_tables(generation)
    async with reading(engine) as conn:
        node = await _node(conn, t.nodes, code)
        teams, members, hours = t.teams.c, t.team_members.c, t.member_hours.c
        total = func.coalesce(func.sum(hours.centihours), 0)
        query = (
            select(teams.team_id, teams.name, teams.kind, func.count(members.volunteer_number.distinct()), total)
            .select_from(
                t.teams.join(t.team_members, members.team_id == teams.team_id).outerjoin(
                    t.member_hours, (hours.volunteer_number == members.volunteer_number) & (hours.year == year)
                )
            )
            .where(teams.active == 1)
            .group_by(teams.team_id, teams.name, teams.kind)
            .order_by(total.desc(), teams.team_id)
            .limit(limit)
        )
        if node["level"] != "city":
            query = query.where(("/" + teams.org_path + "/").contains(f"/{code}/"))
        rows = (await conn.execute(query)).all()
    return {
        "code": code,
        "year": year,
        "teams": [
            {"rank": i, "team_id": team, "name": name, "kind": kind, "members": count, "hours": centihours / 100}
            for i, (team, name, kind, count, centihours) in enumerate(rows, start=1)
        ],
    }


async def top_volunteers(
    engine: AsyncEngine, projection: Figures, generation: int, code: str, year: int, limit: int
) -> dict[str, Any]:
    """The volunteers of a node with the most confirmed hours in `year`, by volunteer number."""
    t = projection.figure_tables(generation)
    async with reading(engine) as conn:
        node = await _node(conn, t.nodes, code)
        m, h = t.members.c, t.member_hours.c
        query = (
            select(m.volunteer_number, h.centihours)
            .select_from(t.members.join(t.member_hours, h.volunteer_number == m.volunteer_number))
            .where(m.active == 1, h.year == year, h.centihours > 0)
            .order_by(h.centihours.desc(), m.volunteer_number)
            .limit(limit)
        )
        if node["level"] != "city":
            query = query.where(("/" + m.org_path + "/").contains(f"/{code}/"))
        rows = (await conn.execute(query)).all()
    return {
        "code": code,
        "year": year,
        "volunteers": [{"rank": i, "volunteer_number": n, "hours": c / 100} for i, (n, c) in enumerate(rows, start=1)],
    }
