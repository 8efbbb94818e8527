"""Sign-in accounts, pure: one role over one scope each, who may grant which, and their lifecycle.

Staff grant roles only at or below their own level and only inside their own part of the tree: a
station's staff open team-leader and volunteer accounts (and fellow station staff) for their
community; a city admin opens anything, partner systems included. What lies outside the granter's
part of the tree is refused as if it did not exist (404), a role they may not grant at all with 403.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from shared.auth import STAFF, STAFF_LEVELS, Actor, Role
from shared.catalog import Event
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.events.common import OrgLevel
from shared.events.registry import AccountClosed, AccountOpened, AccountRoleChanged, PasswordChanged

USERNAME_MAX = 64
PASSWORD_MIN, PASSWORD_MAX = 8, 128

_SCOPE_SHAPE = {
    Role.city_admin: re.compile(r"^\d{4}00$"),
    Role.district_admin: re.compile(r"^\d{6}$"),
    Role.street_staff: re.compile(r"^\d{9}000$"),
    Role.station_staff: re.compile(r"^\d{12}$"),
    Role.team_leader: re.compile(r"^T\d{6,10}$"),
    Role.volunteer: re.compile(r"^V\d{6,12}$"),
    Role.partner: re.compile(r"^$"),
}
_SCOPE_WORDS = {
    Role.city_admin: "a city's division code",
    Role.district_admin: "a district's division code",
    Role.street_staff: "a street's division code",
    Role.station_staff: "a community's division code",
    Role.team_leader: "a team id",
    Role.volunteer: "a volunteer number",
    Role.partner: "empty",
}


class AccountState(StrEnum):
    active = "active"
    closed = "closed"


@dataclass(frozen=True)
class Account:
    account_id: str
    role: Role
    scope: str
    state: AccountState = AccountState.active


@dataclass(frozen=True)
class Place:
    """Where a scope lies in the org tree (its `path`, district first), as the store found it:
    the org unit's level for staff scopes; `gone` for a dissolved team or a volunteer who left."""

    path: tuple[str, ...]
    level: OrgLevel | None = None
    gone: bool = False


def normal_username(username: str) -> str:
    """A username as it is looked up: the same however its holder types its case or width."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def what_scope_names(role: Role) -> str:
    """The thing a role's scope names, as a 404 names it."""
    if role in STAFF_LEVELS:
        return "org unit"
    return {Role.team_leader: "team", Role.volunteer: "volunteer"}.get(role, "scope")


# --- who may grant what -------------------------------------------------------------------------


def ensure_may_grant(granter: Actor, role: Role) -> None:
    """Whether the granter's role may grant `role` at all (403 if not), wherever its scope lies."""
    if not granter.is_staff:
        raise Forbidden("only staff open accounts and change their roles")
    assert granter.role is not None
    if role is Role.partner and granter.role is not Role.city_admin:
        raise Forbidden("only a city admin opens accounts for partner systems")
    if role in STAFF_LEVELS and STAFF.index(role) < STAFF.index(granter.role):
        raise Forbidden(f"a {granter.role} may not grant {role}: it is above their own level")


def ensure_scope_shape(role: Role, scope: str) -> None:
    if not _SCOPE_SHAPE[role].match(scope):
        raise Invalid(f"the scope of a {role} is {_SCOPE_WORDS[role]}, not {scope!r}", field="scope")


def ensure_grantable_at(granter: Actor, role: Role, scope: str, place: Place | None) -> None:
    """The scope exists inside the granter's part of the tree (404 as if unknown otherwise), is of
    the role's level (422), and is not a dissolved team or a volunteer who left (409)."""
    if place is None or not granter.reaches(place.path):
        raise NotFound(f"unknown {what_scope_names(role)} {scope}", field="scope")
    wanted = STAFF_LEVELS.get(role)
    if wanted is not None and place.level != wanted:
        raise Invalid(f"the scope of a {role} is a {wanted}, and {scope} is a {place.level}", field="scope")
    if place.gone:
        raise Conflict(f"{what_scope_names(role)} {scope} is no longer active", field="scope")


def ensure_manages(actor: Actor, account: Account, path: Sequence[str], *, holder_too: bool) -> None:
    """The actor is staff over where the account's scope lies (or, `holder_too`, its holder);
    anyone else is told the account does not exist."""
    if holder_too and actor.id == account.account_id:
        return
    if not actor.reaches(path):
        raise NotFound(f"unknown account {account.account_id}")


def ensure_holder(actor: Actor, account: Account) -> None:
    if actor.id != account.account_id:
        raise NotFound(f"unknown account {account.account_id}")


def ensure_password(password: str, field: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters", field=field)


# --- the account's life -------------------------------------------------------------------------


def open_account(account_id: str, role: Role, scope: str) -> AccountOpened:
    ensure_scope_shape(role, scope)
    return AccountOpened(account_id=account_id, role=role, scope=scope)


def _ensure_active(account: Account) -> None:
    if account.state is AccountState.closed:
        raise Conflict(f"account {account.account_id} is closed", state=str(account.state))


def change_role(account: Account, role: Role, scope: str) -> list[Event]:
    _ensure_active(account)
    ensure_scope_shape(role, scope)
    if (account.role, account.scope) == (role, scope):
        return []
    return [
        AccountRoleChanged(
            account_id=account.account_id, role=role, scope=scope,
            previous_role=account.role, previous_scope=account.scope,
        )
    ]  # fmt: skip


def close(account: Account) -> list[Event]:
    _ensure_active(account)
    return [AccountClosed(account_id=account.account_id)]


def change_password(account: Account, *, reset: bool) -> list[Event]:
    _ensure_active(account)
    return [PasswordChanged(account_id=account.account_id, reset=reset)]


def evolve(account: Account | None, event: Event) -> Account | None:
    match event:
        case AccountOpened():
            return Account(event.account_id, event.role, event.scope)
        case AccountRoleChanged() if account is not None:
            return replace(account, role=event.role, scope=event.scope)
        case AccountClosed() if account is not None:
            return replace(account, state=AccountState.closed)
    return account


def fold(events: Iterable[Event]) -> Account | None:
    account = None
    for event in events:
        account = evolve(account, event)
    return account
