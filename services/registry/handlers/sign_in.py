"""Sign-in (OAuth2 password flow): access tokens and rotating refresh tokens, and the lock-out.

After 5 failures in a row for one username within 15 minutes, that username may not try again
for 15 minutes, whether an account has it or not. Each attempt is counted as a failure before its
password is checked (and forgotten when it turns out right), under the row's lock: however many
attempts arrive at once, no more than 5 passwords are ever checked for one username per window.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registry import credentials, store
from services.registry.domain.accounts import normal_username
from services.registry.handlers import Registry
from shared.auth import Role, TokenIssuer
from shared.db import upsert, writing
from shared.errors import NotAuthenticated, TooManyAttempts

log = logging.getLogger(__name__)

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCK_OUT = timedelta(minutes=15)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)

WRONG_CREDENTIALS = "wrong username or password"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: int  # seconds
    refresh_token: str
    password_change_required: bool


# --- lock-out -----------------------------------------------------------------------------------


async def claim_attempt(conn: AsyncConnection, username_index: str, now: datetime) -> None:
    """Count an attempt for this username as failed, before its password is checked; refused
    with TooManyAttempts while the username is locked out. Call in a write transaction: on
    PostgreSQL the row stays locked until it ends, so concurrent attempts count one by one."""
    table = store.sign_in_failures
    this = table.c.username_index == username_index
    await conn.execute(
        upsert(conn, table)
        .values(username_index=username_index, failures=0, first_failed_at=now)
        .on_conflict_do_nothing()
    )
    row = (await conn.execute(select(table).where(this).with_for_update())).one()
    if row.locked_until is not None and row.locked_until > now:
        wait = math.ceil((row.locked_until - now).total_seconds())
        raise TooManyAttempts(
            f"too many failed sign-ins for this username: try again in {math.ceil(wait / 60)} minutes", retry_after=wait
        )
    fresh = row.failures == 0 or now - row.first_failed_at >= FAILURE_WINDOW
    failures, first = (1, now) if fresh else (row.failures + 1, row.first_failed_at)
    locked_until = now + LOCK_OUT if failures >= MAX_FAILURES else None
    if locked_until is not None:
        log.warning("sign-in locked out for %d minutes after %d failures in a row", LOCK_OUT.seconds // 60, failures)
    await conn.execute(
        update(table).where(this).values(failures=failures, first_failed_at=first, locked_until=locked_until)
    )


async def clear_failures(conn: AsyncConnection, username_index: str) -> None:
    await conn.execute(delete(store.sign_in_failures).where(store.sign_in_failures.c.username_index == username_index))


# --- tokens -------------------------------------------------------------------------------------


async def revoke_account_tokens(conn: AsyncConnection, account_id: str, now: datetime) -> None:
    """Every refresh token of the account stops working (it closed, or its password changed)."""
    table = store.refresh_tokens
    await conn.execute(
        update(table).where(table.c.account_id == account_id, table.c.revoked_at.is_(None)).values(revoked_at=now)
    )


async def _revoke_family(conn: AsyncConnection, family_id: str, now: datetime) -> None:
    table = store.refresh_tokens
    await conn.execute(
        update(table).where(table.c.family_id == family_id, table.c.revoked_at.is_(None)).values(revoked_at=now)
    )


async def _active_account(conn: AsyncConnection, account_id: str) -> Row[Any] | None:
    accounts = store.accounts
    query = select(accounts).where(accounts.c.account_id == account_id, accounts.c.state == "active")
    return (await conn.execute(query)).first()


async def _issue(
    conn: AsyncConnection, issuer: TokenIssuer, account: Row[Any], family_id: str, now: datetime
) -> Tokens:
    refresh_token = credentials.new_refresh_token()
    await conn.execute(
        store.refresh_tokens.insert().values(
            token_hash=credentials.refresh_token_hash(refresh_token), family_id=family_id,
            account_id=account.account_id, issued_at=now, expires_at=now + REFRESH_TOKEN_LIFETIME,
        )
    )  # fmt: skip
    return Tokens(
        access_token=issuer.issue(account.account_id, Role(account.role), account.scope, now),
        expires_in=int(issuer.lifetime.total_seconds()),
        refresh_token=refresh_token,
        password_change_required=account.password_temporary,
    )


async def sign_in(registry: Registry, issuer: TokenIssuer, username: str, password: str, now: datetime) -> Tokens:
    """Tokens for the account with this username and password; the same refusal, after the same
    argon2 work, whether the username is unknown or the password wrong."""
    username_index = registry.vault.username_index(normal_username(username))
    engine = registry.events.engine
    async with writing(engine) as conn:
        await claim_attempt(conn, username_index, now)
        accounts = store.accounts
        query = select(accounts).where(accounts.c.username_index == username_index, accounts.c.state == "active")
        account = (await conn.execute(query)).first()
    if not await credentials.verify_password(account.password_hash if account else None, password):
        raise NotAuthenticated(WRONG_CREDENTIALS)
    assert account is not None
    rehashed = await credentials.hash_password(password) if credentials.needs_rehash(account.password_hash) else None
    async with writing(engine) as conn:
        await clear_failures(conn, username_index)
        account = await _active_account(conn, account.account_id)
        if account is None:  # closed meanwhile
            raise NotAuthenticated(WRONG_CREDENTIALS)
        if rehashed is not None:
            await conn.execute(
                update(store.accounts)
                .where(store.accounts.c.account_id == account.account_id)
                .values(password_hash=rehashed)
            )
        return await _issue(conn, issuer, account, uuid.uuid4().hex, now)


async def refresh(registry: Registry, issuer: TokenIssuer, refresh_token: str, now: datetime) -> Tokens:
    """New tokens for a refresh token, which is retired. A retired one presented again means that
    two parties hold it, one a thief: every token of its sign-in is revoked."""
    table = store.refresh_tokens
    refusal = None
    async with writing(registry.events.engine) as conn:
        query = select(table).where(table.c.token_hash == credentials.refresh_token_hash(refresh_token))
        row = (await conn.execute(query.with_for_update())).first()
        if row is None:
            refusal = "unknown refresh token: sign in again"
        elif row.revoked_at is not None:
            refusal = "the refresh token was revoked: sign in again"
        elif row.used_at is not None:
            await _revoke_family(conn, row.family_id, now)
            log.warning("a used refresh token of account %s came back: its sign-in is revoked", row.account_id)
            refusal = "the refresh token was used before, so it may be stolen: its sign-in is revoked; sign in again"
        elif row.expires_at <= now:
            refusal = "the refresh token has expired: sign in again"
        elif (account := await _active_account(conn, row.account_id)) is None:
            await _revoke_family(conn, row.family_id, now)
            refusal = "the account is closed"
        else:
            await conn.execute(update(table).where(table.c.token_hash == row.token_hash).values(used_at=now))
            return await _issue(conn, issuer, account, row.family_id, now)
    raise NotAuthenticated(refusal)  # after the commit: a revocation stands


async def revoke(registry: Registry, refresh_token: str, now: datetime) -> None:
    """Sign out: the refresh token's sign-in (it and every token it was rotated from or into) ends.
    An unknown token changes nothing and is not refused (RFC 7009)."""
    table = store.refresh_tokens
    async with writing(registry.events.engine) as conn:
        query = select(table.c.family_id).where(table.c.token_hash == credentials.refresh_token_hash(refresh_token))
        family_id = await conn.scalar(query)
        if family_id is not None:
            await _revoke_family(conn, family_id, now)


async def forget_expired(registry: Registry, now: datetime) -> list[str]:
    """Drop refresh tokens past their expiry and failure counts past their window and lock."""
    tokens, failures = store.refresh_tokens, store.sign_in_failures
    async with writing(registry.events.engine) as conn:
        dropped_tokens = await conn.execute(delete(tokens).where(tokens.c.expires_at <= now))
        unlocked = or_(failures.c.locked_until.is_(None), failures.c.locked_until <= now)
        dropped_failures = await conn.execute(
            delete(failures).where(and_(unlocked, failures.c.first_failed_at <= now - FAILURE_WINDOW))
        )
    done = []
    if dropped_tokens.rowcount:
        done.append(f"{dropped_tokens.rowcount} expired refresh tokens dropped")
    if dropped_failures.rowcount:
        done.append(f"{dropped_failures.rowcount} sign-in failure counts forgotten")
    return done
