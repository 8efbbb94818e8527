"""Personal data at rest: each volunteer's name, ID number and phone are sealed with a key of
their own (AES-256-GCM), itself sealed with the service's master key. Destroying a volunteer's
key destroys their personal data for good, while their anonymous history stays.

Duplicate ID numbers are found through a keyed hash (HMAC-SHA256), never the number itself; so
is the account a username signs in to. A username is also sealed, under the master key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.devkeys import load_or_make

log = logging.getLogger(__name__)

_NONCE = 12


@dataclass(frozen=True)
class VaultKeys:
    master: bytes  # wraps the volunteers' keys
    index: bytes  # keys the ID-number hash

    @classmethod
    def from_settings(cls, master_b64: str, index_b64: str) -> VaultKeys:
        keys = cls(base64.b64decode(master_b64), base64.b64decode(index_b64))
        if len(keys.master) != 32 or len(keys.index) < 32:
            raise ValueError("the personal-data key must be 32 bytes and the index key at least 32 (base64)")
        return keys

    @classmethod
    def from_file(cls, path: Path) -> VaultKeys:
        """Development only: keys kept in a file beside the SQLite store, made on first use."""
        stored = load_or_make(path, ("master", "index"), warn="set BEACON_PERSONAL_DATA_KEY and BEACON_ID_INDEX_KEY in production")
        return cls.from_settings(stored["master"], stored["index"])


class Vault:
    def __init__(self, keys: VaultKeys) -> None:
        self._master = AESGCM(keys.master)
        self._index_key = keys.index

    def new_key(self, volunteer_number: str) -> tuple[bytes, bytes]:
        """A fresh key for one volunteer: (the key, the key sealed for storage)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, self._seal(self._master, key, f"key:{volunteer_number}")

    def open_key(self, volunteer_number: str, sealed_key: bytes) -> bytes:
        return self._open(self._master, sealed_key, f"key:{volunteer_number}")

    def seal(self, key: bytes, volunteer_number: str, field: str, value: str) -> bytes:
        # The volunteer and the field are bound in: a sealed value cannot be moved to another.
        return self._seal(AESGCM(key), value.encode(), f"{field}:{volunteer_number}")

    def open(self, key: bytes, volunteer_number: str, field: str, sealed: bytes) -> str:
        return self._open(AESGCM(key), sealed, f"{field}:{volunteer_number}").decode()

    def id_index(self, id_number: str) -> str:
        return hmac.new(self._index_key, id_number.encode(), hashlib.sha256).hexdigest()

    def username_index(self, username: str) -> str:
        """The keyed hash of a username (as `normal_username` spells it); apart from ID numbers'."""
        return hmac.new(self._index_key, b"username\x00" + username.encode(), hashlib.sha256).hexdigest()

    def seal_username(self, account_id: str, username: str) -> bytes:
        return self._seal(self._master, username.encode(), f"username:{account_id}")

    def open_username(self, account_id: str, sealed: bytes) -> str:
        return self._open(self._master, sealed, f"username:{account_id}").decode()

    @staticmethod
    def _seal(cipher: AESGCM, plaintext: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + cipher.encrypt(nonce, plaintext, context.encode())

    @staticmethod
    def _open(cipher: AESGCM, sealed: bytes, context: str) -> bytes:
        return cipher.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
