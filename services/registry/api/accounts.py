"""Sign-in accounts: opening one (staff, for a role and scope they may grant), reading it, changing
its role, closing it, changing and resetting its password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StringConstraints

from services.registry.api import registry_of
from services.registry.api.reach import account_in_reach
from services.registry.domain.accounts import PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX
from services.registry.handlers import accounts as handlers
from services.registry.handlers.accounts import AccountView
from shared.auth import STAFF, Role
from shared.events.common import AccountId
from shared.events.registry import AccountScope
from shared.web import CurrentActor, allow, now_of, problems

router = APIRouter(tags=["accounts"])

# The account a path names, once the caller is found to hold it or be staff over it.
AccountPath = Annotated[AccountId, Depends(account_in_reach)]
Username = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=USERNAME_MAX, pattern=r"^[^\s\x00-\x1f]+$"),
    Field(description="A login name or a phone number; found again whatever its case."),
]
Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class NewAccount(BaseModel):
    username: Username
    password: Password | None = Field(
        default=None, description="The first password, to be changed by the holder; left out, one is made."
    )
    role: Role
    scope: AccountScope = ""


class RoleChange(BaseModel):
    role: Role
    scope: AccountScope = ""


class PasswordChange(BaseModel):
    old_password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: Password


class PasswordReset(BaseModel):
    temporary_password: Password | None = Field(default=None, description="Left out, one is made and returned.")


class AccountAnswer(BaseModel):
    account_id: AccountId
    username: str
    role: Role
    scope: str
    state: str = Field(description="active or closed")
    password_change_required: bool
    temporary_password: str | None = Field(
        default=None, description="The password made for the account: shown this once, to hand to its holder."
    )


def _answer(view: AccountView, made: str | None = None) -> AccountAnswer:
    return AccountAnswer(
        account_id=view.account_id, username=view.username, role=view.role, scope=view.scope, state=view.state,
        password_change_required=view.password_change_required, temporary_password=made,
    )  # fmt: skip


@router.post("/accounts", **allow(*STAFF), status_code=201, responses=problems(403, 404, 409), response_model_exclude_none=True)
async def open_account(body: NewAccount, request: Request, actor: CurrentActor) -> AccountAnswer:
    """Open an account with one role over one scope: an org unit of the role's level for staff,
    a team for a team leader, a volunteer number for a volunteer, nothing for a partner system.
    Staff grant roles at or below their own level, over what lies in their part of the tree (403
    for a role they may not grant, 404 for a scope outside their part); the password is temporary."""
    view, made = await handlers.open_account(
        registry_of(request), actor, username=body.username, password=body.password, role=body.role,
        scope=body.scope, now=now_of(request),
    )  # fmt: skip
    return _answer(view, made)


@router.get("/accounts/{account_id}", **allow(*STAFF, Role.team_leader, Role.volunteer, Role.partner), responses=problems(404), response_model_exclude_none=True)
async def get_account(account_id: AccountPath, request: Request, actor: CurrentActor) -> AccountAnswer:
    """An account, for its holder or staff over it."""
    return _answer(await handlers.account(registry_of(request), actor, account_id))


@router.put("/accounts/{account_id}/role", **allow(*STAFF), responses=problems(403, 404, 409), response_model_exclude_none=True)
async def change_role(account_id: AccountPath, body: RoleChange, request: Request, actor: CurrentActor) -> AccountAnswer:
    """Give an account another role and scope, as for opening one; its next refresh carries them."""
    view = await handlers.change_role(registry_of(request), actor, account_id, role=body.role, scope=body.scope)
    return _answer(view)


@router.post("/accounts/{account_id}/close", **allow(*STAFF, Role.team_leader, Role.volunteer, Role.partner), responses=problems(404, 409), response_model_exclude_none=True)
async def close(account_id: AccountPath, request: Request, actor: CurrentActor) -> AccountAnswer:
    """Close an account (its holder, or staff over it): it signs in no more, its refresh tokens die."""
    return _answer(await handlers.close(registry_of(request), actor, account_id, now_of(request)))


@router.put("/accounts/{account_id}/password", **allow(*STAFF, Role.team_leader, Role.volunteer, Role.partner), responses=problems(404, 409, 429), response_model_exclude_none=True)
async def change_password(
    account_id: AccountPath, body: PasswordChange, request: Request, actor: CurrentActor
) -> AccountAnswer:
    """The holder changes their password, giving the old one (a wrong one counts towards the
    lock-out, as a failed sign-in). Every refresh token of the account is revoked."""
    view = await handlers.change_password(
        registry_of(request), actor, account_id, old_password=body.old_password, new_password=body.new_password,
        now=now_of(request),
    )  # fmt: skip
    return _answer(view)


@router.post(
    "/accounts/{account_id}/password-reset", **allow(*STAFF), responses=problems(403, 404, 409), response_model_exclude_none=True
)
async def reset_password(
    account_id: AccountPath, request: Request, actor: CurrentActor, body: PasswordReset | None = None
) -> AccountAnswer:
    """Staff over the account set a temporary password (made and returned if none is given); the
    holder is asked to change it. Every refresh token of the account is revoked."""
    view, made = await handlers.reset_password(
        registry_of(request), actor, account_id,
        temporary_password=body.temporary_password if body else None, now=now_of(request),
    )  # fmt: skip
    return _answer(view, made)
