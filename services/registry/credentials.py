"""Secrets of sign-in: passwords hashed with argon2id, refresh tokens, the token-signing key.

Hashing a password takes a few hundred milliseconds of CPU on purpose; it runs in a worker thread
so that the event loop serves other requests meanwhile, and never inside a write transaction.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.devkeys import beside_sqlite, load_or_make_key_pair, public_pem_of

# argon2id with the library's defaults (RFC 9106's second recommended option: 3 passes, 64 MiB).
_hasher = PasswordHasher()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


@functools.cache
def _stand_in_hash() -> str:
    """A hash of no one's password, checked when a username has no account: a wrong username
    then costs as long as a wrong password, and the answer's time says nothing."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _stand_in_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one hashed; None (no such account) checks a stand-in, always False."""
    return await asyncio.to_thread(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """A hash made with weaker parameters than today's, to be replaced at the next sign-in."""
    return _hasher.check_needs_rehash(password_hash)


def new_password() -> str:
    """A temporary password for staff to hand over: 16 characters, about 96 bits."""
    return secrets.token_urlsafe(12)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> str:
    # 256 random bits need no salt nor slow hash: SHA-256 keeps a stolen table useless.
    return hashlib.sha256(token.encode()).hexdigest()


def signing_key(private_key_file: str, public_key_file: str, database_url: str) -> bytes:
    """Registry's Ed25519 private key (PEM): from BEACON_JWT_PRIVATE_KEY_FILE; on a SQLite
    development store without it, a pair made once beside the database. It must match the public
    key every service verifies with, when that is set too."""
    if private_key_file:
        private = Path(private_key_file).read_bytes()
    else:
        beside = beside_sqlite(database_url, ".token-signing.pem")
        if beside is None:
            raise RuntimeError(
                "set BEACON_JWT_PRIVATE_KEY_FILE: registry signs every access token with that Ed25519 key"
            )
        public = beside.with_name(beside.stem + ".pub.pem")  # for the other services to be given
        private = load_or_make_key_pair(beside, public, warn="set BEACON_JWT_PRIVATE_KEY_FILE in production")
    if public_key_file and Path(public_key_file).read_bytes().strip() != public_pem_of(private).strip():
        raise RuntimeError(
            f"BEACON_JWT_PUBLIC_KEY_FILE ({public_key_file}) is not the public key of registry's signing key: "
            "no service could verify the tokens registry signs"
        )
    return private
