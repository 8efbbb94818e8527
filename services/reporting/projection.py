"""Reporting's figures, built from events alone: counters per org-tree node.

Every change is an increment keyed by node and figure, so the same events in any interleaving
across streams give the same figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.catalog import Event
from shared.db import upsert
from shared.envelope import EventEnvelope
from shared.events.points import PointsAccountOpened
from shared.events.registry import OrgUnitCreated, SiteOpened, VolunteerRegistered


class Figures:
    name = "figures"
    contexts = ("registry", "dispatch", "points")
    _handled = {m.spec.name for m in (OrgUnitCreated, SiteOpened, VolunteerRegistered, PointsAccountOpened)}

    def __init__(self) -> None:
        self._metadata = MetaData()
        self._tables: dict[int, tuple[Table, Table]] = {}

    def handles(self, event_type: str) -> bool:
        return event_type in self._handled

    def tables(self, generation: int) -> tuple[Table, Table]:
        if generation not in self._tables:
            nodes = Table(
                f"org_nodes_g{generation}",
                self._metadata,
                Column("code", String(15), primary_key=True),
                Column("parent_code", String(15), index=True),
                Column("level", String(20), nullable=False),
                Column("name", String(100), nullable=False),
                Column("population", Integer, nullable=False),
                Column("party_members", Integer, nullable=False),
            )
            counters = Table(
                f"figures_g{generation}",
                self._metadata,
                Column("node_code", String(15), primary_key=True),
                Column("figure", String(80), primary_key=True),
                Column("value", BigInteger, nullable=False),
            )
            self._tables[generation] = (nodes, counters)
        return self._tables[generation]

    async def apply(
        self, conn: AsyncConnection, generation: int, events: Sequence[tuple[EventEnvelope, Event]]
    ) -> None:
        nodes, counters = self.tables(generation)
        increments: Counter[tuple[str, str]] = Counter()
        for envelope, event in events:
            match event:
                case OrgUnitCreated():
                    row = {
                        "code": event.code,
                        "parent_code": event.parent_code,
                        "level": event.level,
                        "name": event.name,
                        "population": event.population,
                        "party_members": event.party_members,
                    }
                    statement = upsert(conn, nodes).values(**row)
                    await conn.execute(statement.on_conflict_do_update(index_elements=["code"], set_=row))
                case VolunteerRegistered():
                    for code in envelope.org_path:
                        increments[(code, "volunteers.registered")] += 1
                        increments[(code, f"volunteers.political_status.{event.political_status}")] += 1
                        increments[(code, f"volunteers.age_band.{event.age_band}")] += 1
                        increments[(code, f"volunteers.gender.{event.gender}")] += 1
                case SiteOpened():
                    for code in envelope.org_path:
                        increments[(code, f"sites.{event.level}")] += 1
                case PointsAccountOpened():
                    for code in envelope.org_path:
                        increments[(code, "points.accounts_opened")] += 1
        if increments:
            rows = [{"node_code": c, "figure": f, "value": v} for (c, f), v in sorted(increments.items())]
            statement = upsert(conn, counters)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["node_code", "figure"], set_={"value": counters.c.value + statement.excluded.value}
                ),
                rows,
            )
