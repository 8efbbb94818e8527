"""Sign-in (OAuth2 password flow): access and refresh tokens, refresh, sign-out.

Access tokens are JWTs signed by registry with its Ed25519 key, for 15 minutes; every service
checks them with the public key. Refresh tokens last 30 days and are good for one refresh each.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from services.registry.api import registry_of
from services.registry.handlers import sign_in as handlers
from shared.auth import TokenIssuer
from shared.ratelimit import RateLimit
from shared.web import ANYONE, allow, now_of, problems

router = APIRouter(tags=["sign-in"])
# On top of the lock-out per username: how often one address may try at all.
SIGN_IN = RateLimit("sign-in", per_minute=30, burst=20)


RefreshToken = Annotated[str, Form(min_length=1, max_length=200, description="A refresh token from `/auth/token`.")]


class TokenAnswer(BaseModel):
    access_token: str = Field(description="A JWT (EdDSA): send it as `Authorization: Bearer …`.")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is good for.")
    refresh_token: str = Field(description="Good for one `/auth/refresh`, within 30 days.")
    password_change_required: bool = Field(
        description="The password is a temporary one that staff set: change it (`PUT /accounts/{id}/password`)."
    )


class Revoked(BaseModel):
    status: Literal["revoked"] = "revoked"


def issuer_of(request: Request) -> TokenIssuer:
    return request.app.state.token_issuer


def _answer(tokens: handlers.Tokens, response: Response) -> TokenAnswer:
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 §5.1: tokens are not to be cached
    return TokenAnswer(
        access_token=tokens.access_token, expires_in=tokens.expires_in, refresh_token=tokens.refresh_token,
        password_change_required=tokens.password_change_required,
    )  # fmt: skip


@router.post("/auth/token", **allow(ANYONE, limited_by=SIGN_IN), responses=problems(401, 429))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, response: Response
) -> TokenAnswer:
    """Sign in with a username and password (form fields, OAuth2 password flow). A wrong username
    and a wrong password are the same 401. After 5 failures in a row for a username within 15
    minutes, it is refused for 15 minutes with 429 and `Retry-After`, whether it exists or not."""
    tokens = await handlers.sign_in(
        registry_of(request), issuer_of(request), form.username, form.password, now_of(request)
    )
    return _answer(tokens, response)


@router.post("/auth/refresh", **allow(ANYONE), responses=problems(401))
async def refresh(
    refresh_token: RefreshToken,
    request: Request,
    response: Response,
    grant_type: Annotated[Literal["refresh_token"] | None, Form()] = None,
) -> TokenAnswer:
    """New tokens for a refresh token, which is then used up. Presenting a used one again revokes
    every token of that sign-in (it was copied: someone else may hold it)."""
    tokens = await handlers.refresh(registry_of(request), issuer_of(request), refresh_token, now_of(request))
    return _answer(tokens, response)


@router.post("/auth/revoke", **allow(ANYONE))
async def revoke(
    request: Request,
    token: Annotated[str, Form(min_length=1, max_length=200, description="The refresh token to revoke.")],
    token_type_hint: Annotated[Literal["refresh_token"] | None, Form()] = None,
) -> Revoked:
    """Sign out: the refresh token and every one of its sign-in stop working. Answered alike for a
    token that is unknown or already revoked (RFC 7009). Access tokens run out by themselves."""
    await handlers.revoke(registry_of(request), token, now_of(request))
    return Revoked()
