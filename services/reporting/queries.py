"""Reading figures for a node of the org tree from the active generation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.projection import Figures
from shared.db import reading
from shared.errors import NotFound


async def figures_for(engine: AsyncEngine, projection: Figures, generation: int, code: str) -> dict[str, Any]:
    nodes, counters = projection.tables(generation)
    async with reading(engine) as conn:
        node = (await conn.execute(select(nodes).where(nodes.c.code == code))).mappings().first()
        if node is None:
            raise NotFound(f"unknown org unit {code}")
        # Counters are kept from the district down; a city sums its districts.
        if node["level"] == "city":
            children = select(nodes.c.code).where(nodes.c.parent_code == code)
            where = counters.c.node_code.in_(children)
        else:
            where = counters.c.node_code == code
        rows = await conn.execute(
            select(counters.c.figure, func.sum(counters.c.value)).where(where).group_by(counters.c.figure)
        )
        values = {figure: int(total) for figure, total in rows}
    registered = values.get("volunteers.registered", 0)
    population = node["population"]
    return {
        "code": code,
        "name": node["name"],
        "level": node["level"],
        "population": population,
        "party_members": node["party_members"],
        "figures": dict(sorted(values.items())),
        "volunteer_share_of_population": registered / population if population else None,
    }
