"""Reporting's figures, built from events alone: changes per org-tree node, figure and day.

Every event adds to counters keyed by (node, figure, city day it was recorded on): a figure in a
period is the sum of its days in the period, and a figure as of a day the sum of every day up to
it, so the figures as they stood then (a later correction counts on its own day). Additions
commute, and the little state kept per volunteer, site and team follows one stream each, so
the same events in any interleaving across streams give the same figures.

Dispatch's and points' folds may also be split (`partitioned`, see shared.replay): by district,
and in a rebuild by ranges of the stream written in any order. What they keep besides counters is
added to (each volunteer's hours a year) or kept by a rule no order changes: an order's row holds
what its placing says and the earliest time of each later step, whichever events come first.
Registry's fold is not split: a transfer moves a volunteer's counts out of the district the
`members` row records, written by the fold of another district's events, so it must come after
them; the registry stream is a small part of a city's events and is followed whole.

Figures (stocks rise and fall; flows only count what happened on the day):
- volunteers.registered (stock; .political_status.*, .age_band.*, .gender.*), volunteers.new,
  .verified, .deregistered, .transferred_in, .transferred_out (flows); party_members.reported_in (stock)
- sites.level.*, sites.kind.*, teams, teams.kind.* (stocks); trainings, trainees (flows)
- activities (.theme.*, .field.*, .group_served.*, .kind.*), activities.cancelled, participations
  (check-ins), service.centihours (confirmed hours × 100; an adjustment or revocation counts its
  correction on its own day) (flows)
- orders.placed, .dispatched, .accepted, .taken, .declined, .timed_out, .escalated, .cancelled,
  .completed, .people_served, .rated, .rating_sum (flows)
- points.accounts_opened, points.issued (credits less debits), points.redeemed, points.expired
  (flows); stars.level.1–5 (stocks)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Integer, MetaData, String, Table, bindparam, case, func
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.catalog import Event
from shared.citytime import city_date
from shared.db import UtcDateTime, add_to_counters, fetch_in, upsert
from shared.envelope import EnvelopeHeader
from shared.events import dispatch as dispatch_events
from shared.events import points as points_events
from shared.events import registry as registry_events

Delta = dict[tuple[str, str, date], int]  # a plain dict: Counter's __missing__ is a Python call per new key
# A fold's changes by figure and day, then by node: an event adds to each node of its path, and
# a path's nodes then share one small dict (a third of the work of a key per node, figure and day).
_Changes = dict[tuple[str, date], dict[str, int]]

_HANDLED = (
    registry_events.OrgUnitCreated, registry_events.SiteOpened, registry_events.SiteClosed,
    registry_events.VolunteerRegistered, registry_events.VolunteerVerified, registry_events.VolunteerDeregistered,
    registry_events.VolunteerTransferred, registry_events.PartyMemberReportedIn, registry_events.TeamCreated,
    registry_events.TeamMemberJoined, registry_events.TeamMemberLeft,
    registry_events.TeamDissolved, registry_events.TrainingSessionHeld, registry_events.TrainingAttended,
    dispatch_events.ActivityScheduled, dispatch_events.ActivityCancelled, dispatch_events.VolunteerCheckedIn,
    dispatch_events.ServiceHoursConfirmed, dispatch_events.ServiceHoursAdjusted, dispatch_events.ServiceHoursRevoked,
    dispatch_events.OrderPlaced, dispatch_events.OrderDispatched, dispatch_events.OrderOpenedForTaking,
    dispatch_events.OrderAccepted, dispatch_events.OrderTaken,
    dispatch_events.OrderDeclined, dispatch_events.OrderTimedOut, dispatch_events.OrderEscalated,
    dispatch_events.OrderCancelled, dispatch_events.OrderCompleted, dispatch_events.OrderRated,
    points_events.PointsAccountOpened, points_events.ServiceCredited, points_events.ServiceDebited,
    points_events.RedemptionHandedOver, points_events.PointsExpired, points_events.StarLevelAwarded,
    points_events.StarLevelLowered,
)  # fmt: skip

# Order events that count once each under orders.<name>.
_ORDER_FLOWS = {
    dispatch_events.OrderDeclined: "declined", dispatch_events.OrderTimedOut: "timed_out",
    dispatch_events.OrderEscalated: "escalated",
}  # fmt: skip


def _hours_change(event: Event) -> int:
    """What a record event changes of the counted hours, in hundredths."""
    match event:
        case dispatch_events.ServiceHoursConfirmed():
            return int(event.hours * 100)
        case dispatch_events.ServiceHoursAdjusted():
            return int((event.hours - event.previous_hours) * 100)
        case dispatch_events.ServiceHoursRevoked():
            return -int(event.hours * 100)
    raise TypeError(event)


# SQLite stores a table keyed by text as a B-tree of rowids plus an index of the key: without
# the rowid, one B-tree, and a rebuild's millions of counter upserts do half the work.
_KEYED = {"sqlite_with_rowid": False}


class FigureTables:
    def __init__(self, metadata: MetaData, generation: int) -> None:
        g = generation
        self.nodes = Table(
            f"org_nodes_g{g}",
            metadata,
            Column("code", String(15), primary_key=True),
            Column("parent_code", String(15), index=True),
            Column("level", String(20), nullable=False),
            Column("name", String(100), nullable=False),
            Column("population", Integer, nullable=False),
            Column("party_members", Integer, nullable=False),
        )
        self.counters = Table(
            f"counters_g{g}",
            metadata,
            Column("node_code", String(15), primary_key=True),
            Column("figure", String(80), primary_key=True),
            Column("day", Date, primary_key=True),
            Column("value", BigInteger, nullable=False),
            **_KEYED,
        )
        # What a later event about a volunteer, site or team needs of an earlier one.
        self.members = Table(
            f"members_g{g}",
            metadata,
            Column("volunteer_number", String(20), primary_key=True),
            Column("org_path", String(200), nullable=False),
            Column("political_status", String(30), nullable=False),
            Column("age_band", String(20), nullable=False),
            Column("gender", String(10), nullable=False),
            Column("active", Integer, nullable=False),
            Column("reported_in", Integer, nullable=False, default=0),
            **_KEYED,
        )
        # Confirmed hours per volunteer and year (× 100), for the party members' 25 hours a year.
        self.member_hours = Table(
            f"member_hours_g{g}",
            metadata,
            Column("volunteer_number", String(20), primary_key=True),
            Column("year", Integer, primary_key=True),
            Column("centihours", BigInteger, nullable=False),
            **_KEYED,
        )
        # Each order's times: for the time to dispatch and to accept (medians need the values), and
        # for the orders overdue at any moment (not accepted when the window opens, not completed
        # when it closes). What the placing gives is null until it is folded: a rebuild may fold
        # an order's later steps first, in another range of the stream.
        self.orders = Table(
            f"orders_g{g}",
            metadata,
            Column("order_id", String(40), primary_key=True),
            Column("org_path", String(200)),
            Column("placed_on", Date, index=True),
            Column("placed_at", UtcDateTime),
            Column("window_start", UtcDateTime),
            Column("window_end", UtcDateTime),
            Column("dispatched_at", UtcDateTime),
            Column("accepted_at", UtcDateTime),
            Column("completed_at", UtcDateTime),
            Column("cancelled_at", UtcDateTime),
            **_KEYED,
        )
        self.sites = Table(
            f"sites_g{g}",
            metadata,
            Column("site_id", String(40), primary_key=True),
            Column("org_path", String(200), nullable=False),
            Column("level", String(20), nullable=False),
            Column("kind", String(30), nullable=False),
            Column("open", Integer, nullable=False),
        )
        self.teams = Table(
            f"teams_g{g}",
            metadata,
            Column("team_id", String(20), primary_key=True),
            Column("org_path", String(200), nullable=False),
            Column("name", String(100), nullable=False),
            Column("kind", String(30), nullable=False),
            Column("active", Integer, nullable=False),
        )
        # Who is in each team now: a team's hours are its members' (see queries.top_teams).
        self.team_members = Table(
            f"team_members_g{g}",
            metadata,
            Column("team_id", String(20), primary_key=True),
            Column("volunteer_number", String(20), primary_key=True),
        )

    def all(self) -> tuple[Table, ...]:
        return (
            self.nodes, self.counters, self.members, self.member_hours, self.orders, self.sites, self.teams,
            self.team_members,
        )  # fmt: skip


def _path(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


class Figures:
    name = "figures"
    contexts = ("registry", "dispatch", "points")
    partitioned = ("dispatch", "points")  # folds that any split by district adds up the same (see above)
    _handled = {model.spec.name for model in _HANDLED}

    def __init__(self) -> None:
        self._metadata = MetaData()
        self._tables: dict[int, FigureTables] = {}

    def handles(self, event_type: str) -> bool:
        return event_type in self._handled

    def figure_tables(self, generation: int) -> FigureTables:
        if generation not in self._tables:
            self._tables[generation] = FigureTables(self._metadata, generation)
        return self._tables[generation]

    def tables(self, generation: int) -> tuple[Table, ...]:
        return self.figure_tables(generation).all()

    async def fold(
        self, conn: AsyncConnection, generation: int, events: Sequence[tuple[EnvelopeHeader, Event]]
    ) -> Tally:
        """The events folded, reading through `conn`; nothing written until `write`."""
        tally = self.tally(conn, generation)
        await tally.fold(events)
        return tally

    async def apply(
        self, conn: AsyncConnection, generation: int, events: Sequence[tuple[EnvelopeHeader, Event]]
    ) -> None:
        """Fold and write in one go, through one connection."""
        await (await self.fold(conn, generation, events)).write(conn)

    def tally(self, conn: AsyncConnection, generation: int, *, rows_as_of_now: bool = False) -> Tally:
        """An empty fold into `generation`: events go in with `fold`, and `write` stores them
        (or nothing does: figures at a moment fold a day's events and only read)."""
        return Tally(conn, self.figure_tables(generation), rows_as_of_now=rows_as_of_now)


class Tally:
    """Events folded into counters' changes (`delta`, by node, figure and day) and the rows
    they read and change (`pending`), not yet written.

    `rows_as_of_now`: the volunteers', sites' and teams' rows read are as they stand now, after
    the events folded (figures at a moment fold one day again on top of what is stored). The
    checks that keep a second copy of an event from counting twice are then off, facets come
    from the rows, and a transfer whose origin the row no longer shows counts its flows only.
    """

    def __init__(self, conn: AsyncConnection, tables: FigureTables, *, rows_as_of_now: bool = False) -> None:
        self.conn = conn
        self.again = rows_as_of_now
        self.counters = tables.counters
        self.changes: _Changes = {}
        self.pending = _Pending(conn, tables)
        self._days: dict[datetime, date] = {}  # city days by time: a rebuild's events share few times

    def _day(self, at: datetime) -> date:
        day = self._days.get(at)
        if day is None:
            day = self._days[at] = city_date(at)
        return day

    @property
    def delta(self) -> Delta:
        """The counters' changes by node, figure and day."""
        return {
            (node, figure, day): change
            for (figure, day), nodes in self.changes.items()
            for node, change in nodes.items()
        }

    async def fold(self, events: Sequence[tuple[EnvelopeHeader, Event]]) -> None:
        # The rows the events read first, in a query or two: then each event folds without
        # awaiting anything (a coroutine an event cost a rebuild a few percent).
        await self.pending.prefetch(events)
        fold = self._fold
        for header, event in events:
            fold(header, event)

    async def write(self, conn: AsyncConnection) -> None:
        """Store what was folded, through `conn` (a write transaction: the fold may have read
        through another, so that it took no write lock meanwhile)."""
        await self.pending.write(conn)
        # In key order: on PostgreSQL the followers of three streams then take row locks in one
        # order (no deadlock); on SQLite each node's rows go into the B-tree together, which
        # takes half the time of a rebuild's counters inserted as they were folded.
        rows = self._rows_in_key_order()
        await add_to_counters(conn, self.counters, ("node_code", "figure", "day"), "value", rows)

    def _rows_in_key_order(self) -> list[tuple[str, str, date, int]]:
        """The counters' changes as (node, figure, day, change) rows sorted by key, without
        sorting every row: by the few (figure, day) keys, then gathered by node."""
        by_node: dict[str, list[tuple[str, str, date, int]]] = {}
        for (figure, day), nodes in sorted(self.changes.items(), key=itemgetter(0)):
            for node, change in nodes.items():
                if change:
                    rows = by_node.get(node)
                    if rows is None:
                        rows = by_node[node] = []
                    rows.append((node, figure, day, change))
        return [row for node in sorted(by_node) for row in by_node[node]]

    def _fold(self, header: EnvelopeHeader, event: Event) -> None:
        day = self._day(header.occurred_at)
        path = header.org_path
        changes, pending, again = self.changes, self.pending, self.again

        def add(figure: str, amount: int = 1, at: tuple[str, ...] = path) -> None:
            nodes = changes.get((figure, day))
            if nodes is None:
                nodes = changes[figure, day] = {}
            for code in at:
                nodes[code] = nodes.get(code, 0) + amount

        match event:  # the most frequent events first: each case is one isinstance check
            # --- dispatch (and points' credits, as frequent as check-ins) ---
            case dispatch_events.VolunteerCheckedIn():
                add("participations")
            case (
                dispatch_events.ServiceHoursConfirmed()
                | dispatch_events.ServiceHoursAdjusted()
                | dispatch_events.ServiceHoursRevoked()
            ):
                change = _hours_change(event)
                add("service.centihours", change)
                key = (event.volunteer_number, day.year)
                pending.hours[key] = pending.hours.get(key, 0) + change
            case points_events.ServiceCredited():
                add("points.issued", event.points)
            case dispatch_events.ActivityScheduled():
                add("activities")
                add(f"activities.theme.{event.theme}")
                add(f"activities.field.{event.field}")
                add(f"activities.group_served.{event.group_served}")
                add(f"activities.kind.{event.kind}")
            case dispatch_events.ActivityCancelled():
                add("activities.cancelled")
            case dispatch_events.OrderPlaced():
                add("orders.placed")
                pending.placed(event, "/".join(path))
            case dispatch_events.OrderDispatched() | dispatch_events.OrderOpenedForTaking():
                if isinstance(event, dispatch_events.OrderDispatched):
                    add("orders.dispatched")
                pending.first(event.order_id, "dispatched_at", event.at)
            case dispatch_events.OrderAccepted() | dispatch_events.OrderTaken():
                add("orders.accepted" if isinstance(event, dispatch_events.OrderAccepted) else "orders.taken")
                pending.first(event.order_id, "accepted_at", event.at)
            case dispatch_events.OrderCompleted():
                add("orders.completed")
                add("orders.people_served", event.people_served)
                pending.first(event.order_id, "completed_at", event.at)
            case dispatch_events.OrderCancelled():
                add("orders.cancelled")
                pending.first(event.order_id, "cancelled_at", event.at)
            case dispatch_events.OrderRated():
                add("orders.rated")
                add("orders.rating_sum", event.rating)
            case _ if type(event) in _ORDER_FLOWS:
                add(f"orders.{_ORDER_FLOWS[type(event)]}")
            # --- points ---
            case points_events.ServiceDebited():
                add("points.issued", -event.points)
            case points_events.PointsAccountOpened():
                add("points.accounts_opened")
            case points_events.RedemptionHandedOver():
                add("points.redeemed", event.points)
            case points_events.PointsExpired():
                add("points.expired", event.points)
            case points_events.StarLevelAwarded() | points_events.StarLevelLowered():
                if event.star_level:
                    add(f"stars.level.{event.star_level}")
                if event.previous_star_level:
                    add(f"stars.level.{event.previous_star_level}", -1)
            # --- registry ---
            case registry_events.VolunteerRegistered():
                if not again and pending.members.get(event.volunteer_number) is not None:
                    return  # registered already (a second copy of the event)
                pending.members.set(
                    event.volunteer_number, org_path="/".join(path), political_status=event.political_status,
                    age_band=event.age_band, gender=event.gender, active=1, reported_in=0,
                )  # fmt: skip
                add("volunteers.new")
                _count_member(add, path, event.political_status, event.age_band, event.gender, 1)
            case registry_events.VolunteerVerified():
                add("volunteers.verified")
            case registry_events.VolunteerDeregistered():
                member = pending.members.get(event.volunteer_number)
                if member is not None and (member["active"] or again):
                    pending.members.set(event.volunteer_number, active=0)
                    where = _path(member["org_path"])
                    add("volunteers.deregistered", at=where)
                    _count_member(add, where, member["political_status"], member["age_band"], member["gender"], -1)
            case registry_events.VolunteerTransferred():
                member = pending.members.get(event.volunteer_number)
                if member is not None and (member["active"] or again):
                    before = _path(member["org_path"])
                    pending.members.set(event.volunteer_number, org_path="/".join(path))
                    if before != path:
                        facets = member["political_status"], member["age_band"], member["gender"]
                        _count_member(add, before, *facets, -1)
                        _count_member(add, path, *facets, 1)
                        add("volunteers.transferred_out", at=before)
                    add("volunteers.transferred_in")
            case registry_events.PartyMemberReportedIn():
                if pending.members.get(event.volunteer_number) is not None:
                    pending.members.set(event.volunteer_number, reported_in=1)
                add("party_members.reported_in")
            case registry_events.TrainingSessionHeld():
                add("trainings")
            case registry_events.TrainingAttended():
                add("trainees")
            case registry_events.OrgUnitCreated():
                pending.nodes.set(
                    event.code, parent_code=event.parent_code, level=event.level, name=event.name,
                    population=event.population, party_members=event.party_members,
                )  # fmt: skip
            case registry_events.SiteOpened():
                site = pending.sites.get(event.site_id)
                if site is None or not site["open"] or again:  # new or reopened: a copy changes nothing
                    pending.sites.set(
                        event.site_id, org_path="/".join(path), level=event.level, kind=event.kind, open=1
                    )
                    add(f"sites.level.{event.level}")
                    add(f"sites.kind.{event.kind}")
            case registry_events.SiteClosed():
                site = pending.sites.get(event.site_id)
                if site is not None and (site["open"] or again):
                    pending.sites.set(event.site_id, open=0)
                    add(f"sites.level.{site['level']}", -1, _path(site["org_path"]))
                    add(f"sites.kind.{site['kind']}", -1, _path(site["org_path"]))
            case registry_events.TeamCreated():
                team = pending.teams.get(event.team_id)
                if team is None or not team["active"] or again:
                    where = "/".join(path)
                    pending.teams.set(event.team_id, org_path=where, name=event.name, kind=event.kind, active=1)
                    pending.memberships[(event.team_id, event.leader_number)] = True
                    add("teams")
                    add(f"teams.kind.{event.kind}")
            case registry_events.TeamMemberJoined():
                pending.memberships[(event.team_id, event.volunteer_number)] = True
            case registry_events.TeamMemberLeft():
                pending.memberships[(event.team_id, event.volunteer_number)] = False
            case registry_events.TeamDissolved():
                team = pending.teams.get(event.team_id)
                if team is not None and (team["active"] or again):
                    pending.teams.set(event.team_id, active=0)
                    add("teams", -1, _path(team["org_path"]))
                    add(f"teams.kind.{team['kind']}", -1, _path(team["org_path"]))


def _count_member(
    add: Callable[[str, int, tuple[str, ...]], None],
    path: tuple[str, ...],
    political_status: str,
    age_band: str,
    gender: str,
    amount: int,
) -> None:
    add("volunteers.registered", amount, path)
    add(f"volunteers.political_status.{political_status}", amount, path)
    add(f"volunteers.age_band.{age_band}", amount, path)
    add(f"volunteers.gender.{gender}", amount, path)


class _Rows:
    """The rows of one table that a batch reads and changes, by primary key: each read once
    (in one query for the batch where it can be), each written once at the batch's end."""

    def __init__(self, conn: AsyncConnection, table: Table) -> None:
        self.conn, self.table = conn, table
        (self.key,) = [column.name for column in table.primary_key]
        self.rows: dict[str, dict[str, Any] | None] = {}
        self.changed: set[str] = set()

    async def prefetch(self, keys: Iterable[str]) -> None:
        wanted = sorted(set(keys) - set(self.rows))
        # By key (fetch_in): a rebuild writes into new tables, whose statistics lag their rows,
        # and PostgreSQL answered a list of keys by reading the whole table.
        columns = [column.name for column in self.table.columns]
        found = await fetch_in(self.conn, self.table, columns, (self.key,), [(key,) for key in wanted])
        rows = {row[self.key]: row for row in (dict(zip(columns, values, strict=True)) for values in found)}
        for key in wanted:
            self.rows[key] = rows.get(key)

    def get(self, key: str) -> dict[str, Any] | None:
        """A row `prefetch` read (or this batch set): the fold reads no row it did not prefetch
        (see `_ROWS_READ`)."""
        return self.rows[key]

    def set(self, key: str, **values: Any) -> None:
        self.rows[key] = {**(self.rows.get(key) or {self.key: key}), **values}
        self.changed.add(key)

    async def write(self, conn: AsyncConnection) -> None:
        if not self.changed:
            return
        statement = upsert(conn, self.table)
        columns = [c.name for c in self.table.columns if c.name != self.key]
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[self.key], set_={c: getattr(statement.excluded, c) for c in columns}
            ),
            [self.rows[key] for key in sorted(self.changed)],
        )


_PLACING = ("org_path", "placed_on", "placed_at", "window_start", "window_end")
_STEPS = ("dispatched_at", "accepted_at", "completed_at", "cancelled_at")
_ORDER_COLUMNS = ("order_id", *_PLACING, *_STEPS)


def _earliest(stored: Any, new: Any) -> Any:
    """The earlier of two times either of which may be null (SQLite's min() gives null then)."""
    return case((new.is_(None), stored), (stored.is_(None), new), (new < stored, new), else_=stored)


# Which events read which rows (the table's, by which field), so that a batch reads them in one
# query each; by exact type, as no event model derives from another.
_ROWS_READ = {
    registry_events.VolunteerRegistered: ("members", "volunteer_number"),
    registry_events.VolunteerDeregistered: ("members", "volunteer_number"),
    registry_events.VolunteerTransferred: ("members", "volunteer_number"),
    registry_events.PartyMemberReportedIn: ("members", "volunteer_number"),
    registry_events.SiteOpened: ("sites", "site_id"),
    registry_events.SiteClosed: ("sites", "site_id"),
    registry_events.TeamCreated: ("teams", "team_id"),
    registry_events.TeamDissolved: ("teams", "team_id"),
}


class _Pending:
    """A batch's changes besides counters: org units, sites, teams, volunteers, their hours and
    the orders, written at its end in a few statements (one per row per event would cap a
    rebuild at a few thousand events/s)."""

    def __init__(self, conn: AsyncConnection, tables: FigureTables) -> None:
        self.conn, self.t = conn, tables
        self.nodes = _Rows(conn, tables.nodes)
        self.members = _Rows(conn, tables.members)
        self.sites = _Rows(conn, tables.sites)
        self.teams = _Rows(conn, tables.teams)
        self.hours: dict[tuple[str, int], int] = {}
        self.memberships: dict[tuple[str, str], bool] = {}  # (team, volunteer): in it after the batch
        self.orders: dict[str, dict[str, Any]] = {}  # the rows' changes, by order (see `_ORDER_COLUMNS`)

    async def prefetch(self, events: Sequence[tuple[EnvelopeHeader, Event]]) -> None:
        wanted: dict[str, list[str]] = {"members": [], "sites": [], "teams": []}
        for _, event in events:  # one pass: most of a rebuild's batches read no row
            read = _ROWS_READ.get(type(event))
            if read is not None:
                wanted[read[0]].append(getattr(event, read[1]))
        for name, keys in wanted.items():
            if keys:
                rows: _Rows = getattr(self, name)
                await rows.prefetch(keys)

    def _order(self, order_id: str) -> dict[str, Any]:
        row = self.orders.get(order_id)
        if row is None:
            row = self.orders[order_id] = dict.fromkeys(_ORDER_COLUMNS)
            row["order_id"] = order_id
        return row

    def placed(self, event: dispatch_events.OrderPlaced, org_path: str) -> None:
        """What the placing says, kept from the first copy of it."""
        row = self._order(event.order_id)
        if row["placed_at"] is None:
            row.update(
                org_path=org_path, placed_on=city_date(event.placed_at), placed_at=event.placed_at,
                window_start=event.window_start, window_end=event.window_end,
            )  # fmt: skip

    def first(self, order_id: str, column: str, at: datetime) -> None:
        """Only the first dispatch, acceptance, completion or cancellation counts: a re-dispatch
        keeps the first time. The earliest, not the first folded: the same in any order."""
        row = self._order(order_id)
        if row[column] is None or at < row[column]:
            row[column] = at

    async def write(self, conn: AsyncConnection) -> None:
        t = self.t
        for rows in (self.nodes, self.members, self.sites, self.teams):
            await rows.write(conn)
        if self.hours:
            statement = upsert(conn, t.member_hours)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["volunteer_number", "year"],
                    set_={"centihours": t.member_hours.c.centihours + statement.excluded.centihours},
                ),
                [{"volunteer_number": n, "year": y, "centihours": c} for (n, y), c in sorted(self.hours.items())],
            )
        joined = [
            {"team_id": team, "volunteer_number": n} for (team, n), now_in in sorted(self.memberships.items()) if now_in
        ]
        left = [{"team": team, "number": n} for (team, n), now_in in sorted(self.memberships.items()) if not now_in]
        if joined:
            await conn.execute(upsert(conn, t.team_members).on_conflict_do_nothing(), joined)
        if left:
            m = t.team_members.c
            await conn.execute(
                t.team_members.delete().where(
                    m.team_id == bindparam("team"), m.volunteer_number == bindparam("number")
                ),
                left,
            )
        if self.orders:
            # Into what another transaction wrote first (another range of the stream, in a
            # rebuild): the placing's columns where it had none, each step's earliest time.
            statement = upsert(conn, t.orders)
            stored, new = t.orders.c, statement.excluded
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["order_id"],
                    set_={
                        **{column: func.coalesce(stored[column], new[column]) for column in _PLACING},
                        **{column: _earliest(stored[column], new[column]) for column in _STEPS},
                    },
                ),
                [self.orders[order_id] for order_id in sorted(self.orders)],
            )
