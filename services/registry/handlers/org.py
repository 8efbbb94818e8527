"""Org tree and practice sites."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

from services.registry import store
from services.registry.domain import org
from services.registry.handlers import Registry, record
from shared.auth import Actor, Role
from shared.errors import Conflict, Forbidden, NotFound
from shared.events.common import OrgLevel, SiteKind, SiteLevel
from shared.events.registry import SiteOpened


async def create_org_unit(
    registry: Registry, actor: Actor, *, code: str, level: OrgLevel, name: str, population: int,
    party_members: int, parent_code: str | None,
) -> org.OrgUnit:
    async with registry.events.transaction() as tx:
        # Where it goes is checked first: a parent outside the caller's part is as good as unknown.
        parent = None
        if parent_code is not None:
            parent = await store.find_org_unit(tx.conn, parent_code)
            if parent is None or not actor.reaches(parent.path):
                raise NotFound(f"unknown parent org unit {parent_code}", field="parent_code")
        elif actor.role is not Role.city_admin:
            raise Forbidden("only a city admin adds a node without a parent (a city)")
        if await store.find_org_unit(tx.conn, code) is not None:
            raise Conflict(f"org unit {code} already exists", field="code")
        event, unit = org.create_org_unit(code, level, name, population, party_members, parent)
        await record(tx, code, 0, [event], org_path=unit.path, actor=actor)
    return unit


async def load_tree(
    registry: Registry,
    actor: Actor,
    rows: Iterable[org.TreeRow],
    reaches: Callable[[tuple[str, ...]], bool] = lambda path: True,
) -> dict[str, object]:
    """Create a whole tree from a file in one transaction: all of it, or nothing. `reaches` says
    where the loader may add nodes (a signed-in caller's reach; the command line, anywhere)."""
    rows = list(rows)
    async with registry.events.transaction() as tx:
        known = {}
        for row in rows:
            for code in filter(None, (row.code, row.parent_code)):
                if code not in known:
                    known[code] = await store.find_org_unit(tx.conn, code)
        decided, unchanged = org.plan_tree(rows, known.get, reaches)
        for event, unit in decided:
            await record(tx, unit.code, 0, [event], org_path=unit.path, actor=actor)
    return {"created": len(decided), "already_present_lines": unchanged}


async def open_site(
    registry: Registry, actor: Actor, *, site_id: str, org_unit_code: str, level: SiteLevel, kind: SiteKind,
    name: str, opened_on: date,
) -> None:
    async with registry.events.transaction() as tx:
        unit = await store.find_org_unit(tx.conn, org_unit_code)
        if unit is None or not actor.reaches(unit.path):
            raise NotFound(f"unknown org unit {org_unit_code}", field="org_unit_code")
        if await store.find_site(tx.conn, site_id) is not None:
            raise Conflict(f"site {site_id} already exists", field="site_id")
        event = org.open_site(site_id, unit, level, kind, name, opened_on)
        await record(tx, site_id, 0, [event], org_path=unit.path, actor=actor)


async def close_site(registry: Registry, actor: Actor, site_id: str, *, closed_on: date, reason: str) -> None:
    async with registry.events.transaction() as tx:
        site = await store.find_site(tx.conn, site_id)
        if site is None:
            raise NotFound(f"unknown site {site_id}")
        history = await tx.history("site", site_id, "site")
        opened = history.payloads[0]
        assert isinstance(opened, SiteOpened)
        events = org.close_site(site, closed_on, opened.opened_on, reason)
        await record(tx, site_id, history.version, events, org_path=site.path, actor=actor)
