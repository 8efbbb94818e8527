"""Registry's application services: load, decide with the domain, append events and views."""

from __future__ import annotations

from datetime import date

from services.registry import domain, store
from shared.errors import Conflict, NotFound
from shared.events.common import OrgLevel, PoliticalStatus, SiteLevel
from shared.eventstore import EventStore
from shared.web import Actor


async def create_org_unit(
    events: EventStore,
    actor: Actor,
    *,
    code: str,
    level: OrgLevel,
    name: str,
    population: int,
    party_members: int,
    parent_code: str | None,
) -> tuple[str, ...]:
    async with events.transaction() as tx:
        if await store.find_org_unit(tx.conn, code) is not None:
            raise Conflict(f"org unit {code} already exists", field="code")
        parent = None
        if parent_code is not None:
            parent = await store.find_org_unit(tx.conn, parent_code)
            if parent is None:
                raise NotFound(f"unknown parent org unit {parent_code}", field="parent_code")
        event, path = domain.create_org_unit(code, level, name, population, party_members, parent)
        await tx.record(code, 0, [event], org_path=path, actor=actor.id)
        await tx.conn.execute(
            store.org_units.insert().values(
                code=code,
                parent_code=parent_code,
                level=level,
                name=name,
                population=population,
                party_members=party_members,
                path="/".join(path),
            )
        )
    return path


async def open_site(
    events: EventStore, actor: Actor, *, site_id: str, org_unit_code: str, level: SiteLevel, kind: str, name: str
) -> None:
    async with events.transaction() as tx:
        org_unit = await store.find_org_unit(tx.conn, org_unit_code)
        if org_unit is None:
            raise NotFound(f"unknown org unit {org_unit_code}", field="org_unit_code")
        event = domain.open_site(site_id, org_unit, level, kind, name)
        # Expected version 0: a second opening of the same site id is a conflict.
        await tx.record(site_id, 0, [event], org_path=org_unit.path, actor=actor.id)
        await tx.conn.execute(
            store.sites.insert().values(site_id=site_id, org_unit_code=org_unit_code, level=level, kind=kind, name=name)
        )


async def register_volunteer(
    events: EventStore,
    actor: Actor,
    *,
    name: str,
    id_number: str,
    phone: str,
    community_code: str,
    political_status: PoliticalStatus,
    skills: list[str],
    today: date,
) -> str:
    id_number = id_number.strip().upper()
    async with events.transaction() as tx:
        community = await store.find_org_unit(tx.conn, community_code)
        if community is None:
            raise NotFound(f"unknown community {community_code}", field="community_code")
        number = await store.next_volunteer_number(tx.conn)
        event = domain.register_volunteer(
            number,
            id_number,
            phone,
            community,
            political_status,
            skills,
            today,
            await store.holder_of_id_number(tx.conn, id_number),
        )
        (envelope,) = await tx.record(number, 0, [event], org_path=community.path, actor=actor.id)
        await tx.conn.execute(
            store.volunteers.insert().values(
                volunteer_number=number,
                id_number=id_number,
                name=name,
                phone=domain.check_mobile(phone),
                community_code=community_code,
                political_status=political_status,
                skills=",".join(event.skills),
                status="pending",
                registered_at=envelope.recorded_at,
            )
        )
    return number
