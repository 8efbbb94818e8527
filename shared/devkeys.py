"""Development keys: secrets a service makes on first use and keeps in a file beside its SQLite
store, so that `make run` needs no set-up. Production sets them in the environment instead."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import make_url

from shared.auth import new_key_pair

log = logging.getLogger(__name__)


def beside_sqlite(database_url: str, suffix: str) -> Path | None:
    """The key file's path next to a SQLite database file; None for any other store."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).with_suffix(suffix)
    return None


def load_or_make(path: Path, names: tuple[str, ...], *, warn: str) -> dict[str, str]:
    """The base64 keys named `names` from `path`, made (32 random bytes each) when the file is new."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in names}
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(fresh, file)
        log.warning("development keys generated in %s: %s", path, warn)
    stored = json.loads(path.read_text())
    return {name: stored[name] for name in names}


def load_or_make_key_pair(private_path: Path, public_path: Path, *, warn: str) -> bytes:
    """The PEM private key of the Ed25519 pair kept in these two files, made when they are new."""
    if not private_path.exists():
        private_path.parent.mkdir(parents=True, exist_ok=True)
        private, public = new_key_pair()
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(private)
        public_path.write_bytes(public)
        log.warning("development token-signing key made in %s (public key %s): %s", private_path, public_path, warn)
    private = private_path.read_bytes()
    if not public_path.exists():
        public_path.write_bytes(public_pem_of(private))
    return private


def public_pem_of(private_pem: bytes) -> bytes:
    """The PEM public key that goes with a PEM private key."""
    private = serialization.load_pem_private_key(private_pem, password=None)
    pem, info = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    return private.public_key().public_bytes(pem, info)
