"""Volunteers: real-name registration, lifecycle, report-in and transfer, certifications."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from services.registry import store
from services.registry.domain import identity, volunteers
from services.registry.domain.volunteers import Volunteer
from services.registry.handlers import Registry, load, record
from shared.catalog import Event
from shared.envelope import utcnow
from shared.errors import Conflict, NotFound
from shared.events.common import PoliticalStatus
from shared.eventstore import Transaction
from shared.web import Actor

SYSTEM = Actor("system:registry")


async def register(
    registry: Registry,
    actor: Actor,
    *,
    name: str,
    id_number: str,
    phone: str,
    community_code: str,
    political_status: PoliticalStatus,
    skills: Iterable[str],
    consent: bool,
    today: date,
    tags: Iterable[str] = (),
) -> str:
    resident = identity.parse_resident_id(id_number, today)
    phone = identity.check_mobile(phone)
    name = identity.check_name(name)
    id_index = registry.vault.id_index(resident.number)
    now = utcnow()
    try:
        async with registry.events.transaction() as tx:
            return await _register(
                registry, tx, actor, resident, name, phone, id_index, community_code, political_status, skills,
                now if consent else None, today, tags,
            )
    except IntegrityError:
        # Two registrations of the same person raced; the unique index let one through.
        raise Conflict("this ID number was registered at the same moment; look it up", field="id_number") from None


async def _register(
    registry: Registry, tx: Transaction, actor: Actor, resident: identity.ResidentId, name: str, phone: str,
    id_index: str, community_code: str, political_status: PoliticalStatus, skills: Iterable[str],
    consented_at: datetime | None, today: date, tags: Iterable[str] = (),
) -> str:
    community = await store.find_org_unit(tx.conn, community_code)
    if community is None:
        raise NotFound(f"unknown community {community_code}", field="community_code")
    number = await store.next_number(tx.conn, "V")
    event = volunteers.register(
        number, resident, community, political_status, skills, consented_at, today,
        await store.holder_of_id_index(tx.conn, id_index), tags,
    )
    key, sealed_key = registry.vault.new_key(number)
    seal = registry.vault.seal
    await tx.conn.execute(
        store.volunteers.insert().values(
            volunteer_number=number,
            id_index=id_index,
            name_sealed=seal(key, number, "name", name),
            id_number_sealed=seal(key, number, "id_number", resident.number),
            phone_sealed=seal(key, number, "phone", phone),
            community_code=community.code,
            org_path="/".join(community.path),
            political_status=event.political_status,
            age_band=event.age_band,
            gender=event.gender,
            status="pending",
            tags="",
            registered_at=utcnow(),
            consented_at=consented_at,
            personal_data_destroyed=False,
        )
    )
    await tx.conn.execute(store.volunteer_keys.insert().values(volunteer_number=number, sealed_key=sealed_key))
    await record(tx, number, 0, [event], org_path=community.path, actor=actor)
    return number


async def _volunteer(tx: Transaction, number: str) -> tuple[Volunteer, int]:
    history = await load(tx, "volunteer", number, "volunteer")
    volunteer = volunteers.fold(history.entries)
    assert volunteer is not None
    return volunteer, history.version


async def change(
    registry: Registry, actor: Actor, number: str, decide: Callable[[Volunteer], list[Event]]
) -> Volunteer:
    """Load a volunteer, let the domain decide, record what it decided; return the new state."""
    async with registry.events.transaction() as tx:
        volunteer, version = await _volunteer(tx, number)
        events = decide(volunteer)
        envelopes = await record(tx, number, version, events, org_path=volunteer.org_path, actor=actor)
        for envelope, event in zip(envelopes, events, strict=True):
            volunteer = volunteers.evolve(volunteer, envelope.org_path, event)
    return volunteer


async def verify(registry: Registry, actor: Actor, number: str) -> Volunteer:
    return await change(registry, actor, number, volunteers.verify)


async def suspend(registry: Registry, actor: Actor, number: str, reason: str) -> Volunteer:
    return await change(registry, actor, number, lambda v: volunteers.suspend(v, reason))


async def reactivate(registry: Registry, actor: Actor, number: str) -> Volunteer:
    return await change(registry, actor, number, volunteers.reactivate)


async def update_profile(
    registry: Registry, actor: Actor, number: str, political_status: PoliticalStatus, skills: list[str], tags: list[str]
) -> Volunteer:
    return await change(registry, actor, number, lambda v: volunteers.update_profile(v, political_status, skills, tags))


async def report_in(registry: Registry, actor: Actor, number: str) -> Volunteer:
    return await change(registry, actor, number, volunteers.report_in)


async def grant_certification(
    registry: Registry, actor: Actor, number: str, certification: str, granted_on: date, expires_on: date | None
) -> Volunteer:
    return await change(
        registry, actor, number, lambda v: volunteers.grant_certification(v, certification, granted_on, expires_on)
    )


async def transfer(registry: Registry, actor: Actor, number: str, to_community_code: str) -> Volunteer:
    async with registry.events.transaction() as tx:
        volunteer, version = await _volunteer(tx, number)
        destination = await store.find_org_unit(tx.conn, to_community_code)
        if destination is None:
            raise NotFound(f"unknown community {to_community_code}", field="to_community_code")
        events = volunteers.transfer(volunteer, destination, approved_by=actor.id)
        # Recorded under the new community's path: the event reaches the new district's subject.
        await record(tx, number, version, events, org_path=destination.path, actor=actor)
        return volunteers.evolve(volunteer, destination.path, events[0])


async def deregister(registry: Registry, actor: Actor, number: str, *, on_request: bool) -> Volunteer:
    """Deregister; on the volunteer's request also destroy their personal data (their key).

    The events and every figure built from them stay: they never held personal data.
    """
    async with registry.events.transaction() as tx:
        volunteer, version = await _volunteer(tx, number)
        events = volunteers.deregister(volunteer, on_request)
        await record(tx, number, version, events, org_path=volunteer.org_path, actor=actor)
        if on_request:
            await tx.conn.execute(store.volunteer_keys.delete().where(store.volunteer_keys.c.volunteer_number == number))
            await tx.conn.execute(
                update(store.volunteers)
                .where(store.volunteers.c.volunteer_number == number)
                .values(id_index=None, name_sealed=None, id_number_sealed=None, phone_sealed=None, personal_data_destroyed=True)
            )
        return volunteers.evolve(volunteer, volunteer.org_path, events[0]) if events else volunteer


async def personal_data(registry: Registry, number: str) -> dict[str, str] | None:
    """Name, ID number and phone in clear, for staff allowed to see them; None once destroyed."""
    v, k = store.volunteers, store.volunteer_keys
    async with registry.events.engine.connect() as conn:
        row = (
            await conn.execute(
                select(v.c.name_sealed, v.c.id_number_sealed, v.c.phone_sealed, k.c.sealed_key)
                .join(k, k.c.volunteer_number == v.c.volunteer_number)
                .where(v.c.volunteer_number == number)
            )
        ).first()
    if row is None:
        return None
    key = registry.vault.open_key(number, row.sealed_key)
    open_ = registry.vault.open
    return {
        "name": open_(key, number, "name", row.name_sealed),
        "id_number": open_(key, number, "id_number", row.id_number_sealed),
        "phone": open_(key, number, "phone", row.phone_sealed),
    }


async def expire_certifications(registry: Registry, today: date) -> int:
    """The daily job: every certification past its date expires, as an event. Returns how many."""
    table = store.certifications
    async with registry.events.engine.connect() as conn:
        due = sorted(set((await conn.execute(select(table.c.volunteer_number).where(table.c.expires_on <= today))).scalars()))
    expired = 0
    for number in due:
        async with registry.events.transaction() as tx:
            volunteer, version = await _volunteer(tx, number)
            events = volunteers.expire_certifications(volunteer, today)
            await record(tx, number, version, events, org_path=volunteer.org_path, actor=SYSTEM)
            expired += len(events)
    return expired
