"""Sign-in accounts: opening (by staff, or the first city admin from the command line), role
changes, closing, password changes and resets.

The account's row holds the username (hashed to find it, and sealed) and the argon2 hash of the
password; its events hold neither. Passwords are hashed before the write transaction begins: the
store is not held for the few hundred milliseconds that takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import credentials, store
from services.registry.domain import accounts
from services.registry.domain.accounts import Account, Place, normal_username
from services.registry.handlers import Registry, record
from services.registry.handlers.sign_in import claim_attempt, clear_failures, revoke_account_tokens
from shared.auth import STAFF_LEVELS, Actor, Role
from shared.db import reading, writing
from shared.errors import Conflict, Forbidden, Invalid
from shared.events.common import OrgLevel, VolunteerStatus
from shared.eventstore import Transaction


@dataclass(frozen=True)
class AccountView:
    account_id: str
    username: str
    role: Role
    scope: str
    state: str
    password_change_required: bool


async def _place(conn: AsyncConnection, role: Role, scope: str) -> Place | None:
    """Where a role's scope lies in the org tree, or None if there is no such thing."""
    if role in STAFF_LEVELS:
        unit = await store.find_org_unit(conn, scope)
        return None if unit is None else Place(unit.path, unit.level)
    if role is Role.team_leader:
        team = (await conn.execute(select(store.teams).where(store.teams.c.team_id == scope))).first()
        site = None if team is None else await store.find_site(conn, team.site_id)
        return None if team is None or site is None else Place(site.path, gone=team.dissolved)
    if role is Role.volunteer:
        volunteers = store.volunteers
        query = select(volunteers.c.org_path, volunteers.c.status).where(volunteers.c.volunteer_number == scope)
        volunteer = (await conn.execute(query)).first()
        if volunteer is None:
            return None
        return Place(tuple(volunteer.org_path.split("/")), gone=volunteer.status == VolunteerStatus.deregistered)
    city = await _city(conn)
    return None if city is None else Place((city,))


async def _city(conn: AsyncConnection) -> str | None:
    units = store.org_units
    return await conn.scalar(select(units.c.code).where(units.c.level == OrgLevel.city).limit(1))


async def _admins_city(conn: AsyncConnection) -> str | None:
    """The city this registry serves: its org tree's, or before there is one, its first admin's."""
    table = store.accounts
    admins = select(table.c.scope).where(table.c.role == Role.city_admin).order_by(table.c.account_id).limit(1)
    return await _city(conn) or await conn.scalar(admins)


async def _username_taken(conn: AsyncConnection, username_index: str) -> None:
    taken = await conn.scalar(
        select(store.accounts.c.account_id).where(store.accounts.c.username_index == username_index)
    )
    if taken is not None:
        raise Conflict("that username is taken", field="username")


async def _insert(
    registry: Registry,
    tx: Transaction,
    actor: Actor,
    username: str,
    password_hash: str,
    role: Role,
    scope: str,
    path: tuple[str, ...],
    *,
    temporary: bool,
    now: datetime,
) -> str:
    """The new account's row and its AccountOpened, in the caller's transaction."""
    username_index = registry.vault.username_index(normal_username(username))
    await _username_taken(tx.conn, username_index)
    account_id = await store.next_number(tx.conn, "AC")
    event = accounts.open_account(account_id, role, scope)
    await tx.conn.execute(
        store.accounts.insert().values(
            account_id=account_id, username_index=username_index,
            username_sealed=registry.vault.seal_username(account_id, username),
            password_hash=password_hash, password_temporary=temporary,
            role=role, scope=scope, org_path="/".join(path), state="active", opened_at=now,
        )
    )  # fmt: skip
    await record(tx, account_id, 0, [event], org_path=path, actor=actor)  # type: ignore[arg-type]
    return account_id


async def open_account(
    registry: Registry, actor: Actor, *, username: str, password: str | None, role: Role, scope: str, now: datetime
) -> tuple[AccountView, str | None]:
    """Open an account that the actor may grant; its first password is temporary (made here when
    none is given, and returned: the only time it is shown)."""
    accounts.ensure_may_grant(actor, role)
    accounts.ensure_scope_shape(role, scope)
    made = credentials.new_password() if password is None else None
    password = made or password or ""
    accounts.ensure_password(password, "password")
    password_hash = await credentials.hash_password(password)
    async with registry.events.transaction() as tx:
        place = await _place(tx.conn, role, scope)
        if role is Role.partner and place is None:  # a city admin made before the city itself
            place = Place((actor.scope,))
        accounts.ensure_grantable_at(actor, role, scope, place)
        assert place is not None
        account_id = await _insert(
            registry, tx, actor, username, password_hash, role, scope, place.path, temporary=True, now=now
        )
        view = await _view(registry, tx.conn, account_id)
    return view, made


async def open_first_admin(
    registry: Registry, actor: Actor, *, username: str, password: str, city: str | None, now: datetime
) -> str:
    """A city admin account, opened from the server's command line (no token needed): the first
    one of a fresh install, or another when every admin is locked out. The city may not exist yet
    in the org tree; if it does, it is this city."""
    accounts.ensure_password(password, "password")
    password_hash = await credentials.hash_password(password)
    async with registry.events.transaction() as tx:
        known = await _admins_city(tx.conn)
        if city is None and known is None:
            raise Invalid("the org tree has no city yet: name it (its division code)", field="city")
        if city is not None and known is not None and city != known:
            raise Invalid(f"this registry's city is {known}, not {city}", field="city")
        city = city or known
        assert city is not None
        accounts.ensure_scope_shape(Role.city_admin, city)
        return await _insert(
            registry, tx, actor, username, password_hash, Role.city_admin, city, (city,), temporary=False, now=now
        )


async def _row(conn: AsyncConnection, account_id: str) -> Row[Any]:
    return (await conn.execute(select(store.accounts).where(store.accounts.c.account_id == account_id))).one()


async def _view(registry: Registry, conn: AsyncConnection, account_id: str) -> AccountView:
    row = await _row(conn, account_id)
    return AccountView(
        account_id=row.account_id, username=registry.vault.open_username(row.account_id, row.username_sealed),
        role=Role(row.role), scope=row.scope, state=row.state, password_change_required=row.password_temporary,
    )  # fmt: skip


async def _path(conn: AsyncConnection, account: Account) -> tuple[str, ...]:
    """Where the account's scope lies now (a volunteer may have moved), else where it was granted."""
    place = await _place(conn, account.role, account.scope)
    if place is not None:
        return place.path
    return tuple((await _row(conn, account.account_id)).org_path.split("/"))


async def _load(tx: Transaction, account_id: str) -> tuple[Account, int, tuple[str, ...]]:
    history = await tx.history("account", account_id, "account")
    account = accounts.fold(history.payloads)
    assert account is not None
    return account, history.version, await _path(tx.conn, account)


async def ensure_reached(registry: Registry, actor: Actor, account_id: str) -> None:
    """Whether the caller holds the account or is staff over it; anyone else is told, as for an
    id nobody has, that there is no such account."""
    async with reading(registry.events.engine) as conn:
        found, _, path = await _load(Transaction(conn, registry.events), account_id)
    accounts.ensure_manages(actor, found, path, holder_too=True)


async def account(registry: Registry, actor: Actor, account_id: str) -> AccountView:
    """The account, for its holder or staff over it."""
    async with reading(registry.events.engine) as conn:
        tx = Transaction(conn, registry.events)
        found, _, path = await _load(tx, account_id)
        accounts.ensure_manages(actor, found, path, holder_too=True)
        return await _view(registry, conn, account_id)


async def change_role(registry: Registry, actor: Actor, account_id: str, *, role: Role, scope: str) -> AccountView:
    """Staff over an account give it another role they may grant, over a scope they reach."""
    accounts.ensure_may_grant(actor, role)
    accounts.ensure_scope_shape(role, scope)
    async with registry.events.transaction() as tx:
        found, version, path = await _load(tx, account_id)
        accounts.ensure_manages(actor, found, path, holder_too=False)
        place = await _place(tx.conn, role, scope)
        accounts.ensure_grantable_at(actor, role, scope, place)
        assert place is not None
        events = accounts.change_role(found, role, scope)
        await record(tx, account_id, version, events, org_path=place.path, actor=actor)  # type: ignore[arg-type]
        return await _view(registry, tx.conn, account_id)


async def close(registry: Registry, actor: Actor, account_id: str, now: datetime) -> AccountView:
    """The holder or staff over the account close it: no sign-in any more, no refresh token works."""
    async with registry.events.transaction() as tx:
        found, version, path = await _load(tx, account_id)
        accounts.ensure_manages(actor, found, path, holder_too=True)
        events = accounts.close(found)
        await revoke_account_tokens(tx.conn, account_id, now)
        await record(tx, account_id, version, events, org_path=path, actor=actor)  # type: ignore[arg-type]
        return await _view(registry, tx.conn, account_id)


async def _set_password(
    registry: Registry,
    actor: Actor,
    account_id: str,
    password_hash: str,
    *,
    reset: bool,
    now: datetime,
    expected_version: int | None = None,
) -> AccountView:
    async with registry.events.transaction() as tx:
        found, version, path = await _load(tx, account_id)
        if reset:
            accounts.ensure_manages(actor, found, path, holder_too=False)
        else:
            accounts.ensure_holder(actor, found)
        events = accounts.change_password(found, reset=reset)
        if expected_version is not None and version != expected_version:
            raise Conflict(f"account {account_id} changed while its password was checked: try again")
        row = await _row(tx.conn, account_id)
        table = store.accounts
        await tx.conn.execute(
            update(table)
            .where(table.c.account_id == account_id)
            .values(password_hash=password_hash, password_temporary=reset)
        )
        if row.username_index is not None:
            await clear_failures(tx.conn, row.username_index)
        await revoke_account_tokens(tx.conn, account_id, now)
        await record(tx, account_id, version, events, org_path=path, actor=actor)  # type: ignore[arg-type]
        return await _view(registry, tx.conn, account_id)


async def change_password(
    registry: Registry, actor: Actor, account_id: str, *, old_password: str, new_password: str, now: datetime
) -> AccountView:
    """The holder changes their password, giving the old one; a wrong old one counts as a failed
    sign-in (a stolen access token must not become a way to guess the password)."""
    accounts.ensure_password(new_password, "new_password")
    if new_password == old_password:
        raise Invalid("the new password is the old one", field="new_password")
    async with writing(registry.events.engine) as conn:
        found, version, path = await _load(Transaction(conn, registry.events), account_id)
        if actor.id != found.account_id and actor.reaches(path):
            raise Forbidden("only its holder changes an account's password: staff over it reset it (password-reset)")
        accounts.ensure_holder(actor, found)
        row = await _row(conn, account_id)
        if row.username_index is None:
            raise Conflict(f"account {account_id} is closed", state="closed")
        await claim_attempt(conn, row.username_index, now)
    if not await credentials.verify_password(row.password_hash, old_password):
        raise Invalid("the old password is not right", field="old_password")
    password_hash = await credentials.hash_password(new_password)
    return await _set_password(
        registry, actor, account_id, password_hash, reset=False, now=now, expected_version=version
    )


async def reset_password(
    registry: Registry, actor: Actor, account_id: str, *, temporary_password: str | None, now: datetime
) -> tuple[AccountView, str | None]:
    """Staff over the account set a temporary password (made here when none is given, and
    returned); its holder is asked to change it at their next sign-in."""
    if not actor.is_staff:
        raise Forbidden("only staff reset passwords; holders change their own with PUT /accounts/{id}/password")
    made = credentials.new_password() if temporary_password is None else None
    password = made or temporary_password or ""
    accounts.ensure_password(password, "temporary_password")
    password_hash = await credentials.hash_password(password)
    return await _set_password(registry, actor, account_id, password_hash, reset=True, now=now), made
