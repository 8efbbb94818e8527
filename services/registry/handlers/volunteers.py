"""Volunteers: real-name registration, lifecycle, report-in and transfer, certifications,
insurance records."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from services.registry import store
from services.registry.domain import identity, volunteers
from services.registry.domain.org import OrgUnit
from services.registry.domain.volunteers import Volunteer
from services.registry.handlers import Registry, record
from shared.auth import Actor
from shared.catalog import Event
from shared.db import reading
from shared.envelope import utcnow
from shared.errors import Conflict, Invalid, NotFound, Refused
from shared.events.common import PoliticalStatus
from shared.events.registry import VolunteerRegistered
from shared.eventstore import ConcurrencyConflict, Transaction

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
    holder = await store.holder_of_id_index(tx.conn, id_index)
    event = volunteers.register(
        number, resident, community, political_status, skills, consented_at, today,
        holder and holder.volunteer_number, tags, name,
        holder_shown=holder is not None and (actor.reaches(holder.org_path) or actor.is_volunteer(holder.volunteer_number)),
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
    history = await tx.history("volunteer", number, "volunteer")
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


async def record_insurance(
    registry: Registry, actor: Actor, number: str, *, insurer: str, cover: str, valid_from: date, valid_until: date
) -> Volunteer:
    return await change(
        registry, actor, number, lambda v: volunteers.record_insurance(v, insurer, cover, valid_from, valid_until)
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
    async with reading(registry.events.engine) as conn:
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
    async with reading(registry.events.engine) as conn:
        due = sorted(set((await conn.execute(select(table.c.volunteer_number).where(table.c.expires_on <= today))).scalars()))
    expired = 0
    for number in due:
        async with registry.events.transaction() as tx:
            volunteer, version = await _volunteer(tx, number)
            events = volunteers.expire_certifications(volunteer, today)
            await record(tx, number, version, events, org_path=volunteer.org_path, actor=SYSTEM)
            expired += len(events)
    return expired


@dataclass(frozen=True)
class NewVolunteer:
    """One registration as a bulk import hands it over: the same inputs as `register`."""

    name: str
    id_number: str
    phone: str
    community_code: str
    political_status: PoliticalStatus
    skills: tuple[str, ...]
    consent: bool
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Checked:
    position: int
    row: NewVolunteer
    resident: identity.ResidentId
    name: str
    phone: str
    id_index: str


@dataclass(frozen=True)
class _Decided:
    checked: _Checked
    event: VolunteerRegistered
    community: OrgUnit


async def register_batch(
    registry: Registry,
    actor: Actor,
    rows: Sequence[NewVolunteer],
    today: date,
    reaches: Callable[[tuple[str, ...]], bool] = lambda path: True,
) -> list[str | Refused]:
    """Register many volunteers in one transaction, each checked as `register` checks one, and
    only into communities the importer `reaches` (staff: their part of the tree; the command
    line: anywhere). The tree is public knowledge, so a community outside is refused as such.

    Returns, row by row, the new volunteer number or the refusal (a Conflict with the holder's
    `volunteer_number` in its details when the ID number is already registered, also earlier in
    the same batch). When the batch fails in the database, each row is tried in a transaction
    of its own, so that one bad row cannot take the good ones with it.
    """
    outcomes: dict[int, str | Refused] = {}
    checked = []
    for position, row in enumerate(rows):
        try:
            resident = identity.parse_resident_id(row.id_number, today)
            phone = identity.check_mobile(row.phone)
            name = identity.check_name(row.name)
        except Refused as refusal:
            outcomes[position] = refusal
            continue
        checked.append(_Checked(position, row, resident, name, phone, registry.vault.id_index(resident.number)))
    if checked:
        try:
            async with registry.events.transaction() as tx:
                outcomes.update(await _register_checked(registry, tx, actor, checked, today, reaches))
        except (DBAPIError, ConcurrencyConflict) as error:
            if len(checked) > 1:
                for one in checked:
                    (outcomes[one.position],) = await register_batch(registry, actor, [one.row], today, reaches)
            elif isinstance(error, IntegrityError | ConcurrencyConflict):
                outcomes[checked[0].position] = Conflict(
                    "this ID number was registered at the same moment; look it up", field="id_number"
                )
            elif isinstance(error, DataError):
                outcomes[checked[0].position] = Invalid(f"the database refused this row: {error.orig}")
            else:
                raise
    return [outcomes[position] for position in range(len(rows))]


async def _register_checked(
    registry: Registry,
    tx: Transaction,
    actor: Actor,
    checked: list[_Checked],
    today: date,
    reaches: Callable[[tuple[str, ...]], bool],
) -> list[tuple[int, str | Refused]]:
    conn = tx.conn
    communities = await store.find_org_units(conn, (c.row.community_code for c in checked))
    holders = await store.holders_of_id_indexes(conn, (c.id_index for c in checked))
    # Numbers for every row that may pass; the ones refused below are given back at the end.
    numbers = await store.reserve_numbers(conn, "V", len(checked))
    now = utcnow()
    outcomes: list[tuple[int, str | Refused]] = []
    decided: list[_Decided] = []
    for c in checked:
        community = communities.get(c.row.community_code)
        try:
            if community is None:
                raise NotFound(f"unknown community {c.row.community_code}", field="community_code")
            if not reaches(community.path):
                raise NotFound("the community is outside your part of the org tree", field="community_code")
            number = numbers[len(decided)]
            holder = holders.get(c.id_index)
            event = volunteers.register(
                number, c.resident, community, c.row.political_status, c.row.skills,
                now if c.row.consent else None, today, holder and holder.volunteer_number, c.row.tags, c.row.name,
                holder_shown=holder is not None and reaches(holder.org_path),
            )
        except Refused as refusal:
            outcomes.append((c.position, refusal))
            continue
        # A second row with the same ID number later in this batch.
        holders[c.id_index] = store.IdHolder(number, community.path)
        decided.append(_Decided(c, event, community))
        outcomes.append((c.position, number))
    await store.give_back_numbers(conn, "V", len(numbers) - len(decided))
    if decided:
        await _insert_registrations(registry, tx, actor, decided)
    return outcomes


async def _insert_registrations(registry: Registry, tx: Transaction, actor: Actor, decided: list[_Decided]) -> None:
    """What `_register` writes for one volunteer, for many: rows, keys, events, outbox, views."""
    seal, registered_at = registry.vault.seal, utcnow()
    volunteer_rows, key_rows = [], []
    for d in decided:
        number, c = d.event.volunteer_number, d.checked
        key, sealed_key = registry.vault.new_key(number)
        volunteer_rows.append(
            {
                "volunteer_number": number,
                "id_index": c.id_index,
                "name_sealed": seal(key, number, "name", c.name),
                "id_number_sealed": seal(key, number, "id_number", c.resident.number),
                "phone_sealed": seal(key, number, "phone", c.phone),
                "community_code": d.community.code,
                "org_path": "/".join(d.community.path),
                "political_status": d.event.political_status,
                "age_band": d.event.age_band,
                "gender": d.event.gender,
                "status": "pending",
                "tags": "|".join(d.event.tags),
                "registered_at": registered_at,
                "consented_at": d.event.consented_at,
                "personal_data_destroyed": False,
            }
        )
        key_rows.append({"volunteer_number": number, "sealed_key": sealed_key})
    await tx.conn.execute(store.volunteers.insert(), volunteer_rows)
    await tx.conn.execute(store.volunteer_keys.insert(), key_rows)
    envelope = registry.events.catalog.envelope
    envelopes = [
        envelope(d.event, aggregate_id=d.event.volunteer_number, aggregate_version=1, org_path=d.community.path, actor=actor.id)
        for d in decided
    ]
    await tx.append_new(envelopes)
    # views.project does this one volunteer at a time (three statements each, most of the time
    # of an import): the same projection of VolunteerRegistered, for the whole batch at once.
    skill_rows = [{"volunteer_number": d.event.volunteer_number, "skill": skill} for d in decided for skill in d.event.skills]
    if skill_rows:
        await tx.conn.execute(store.volunteer_skills.insert(), skill_rows)
