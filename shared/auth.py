"""Who is calling: access tokens, the role each grants, and how far it reaches in the org tree.

Registry alone holds the private key and signs short-lived access tokens (JWT, EdDSA over
Ed25519); every service verifies them with the public key. A token names an account, one role
and the role's scope:

- city_admin, district_admin, street_staff, station_staff: staff of a node of the org tree (its
  division code); they act on what lies at or under that node.
- team_leader: a team (its id); volunteer: themselves (their volunteer number).
- partner: a partner system; public events and the star check only.

The refusal policy, the same on every endpoint of every service:
- no token, or one that is expired, forged or not ours: 401, with the reason;
- a valid token whose role may not use the endpoint at all: 403;
- a role that may use it, asking about something outside its scope: 404, exactly the answer for
  something that does not exist, so that nobody learns what exists outside their part of the city.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ISSUER = "beacon-registry"
AUDIENCE = "beacon"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
_ALGORITHM = "EdDSA"
_MOST_TOKENS_KEPT = 10_000  # verified tokens remembered (see TokenVerifier)


class Role(StrEnum):
    city_admin = "city_admin"
    district_admin = "district_admin"
    street_staff = "street_staff"
    station_staff = "station_staff"
    team_leader = "team_leader"
    volunteer = "volunteer"
    partner = "partner"


# Staff roles, from the top of the tree down: the org level each one's scope names.
STAFF_LEVELS = {
    Role.city_admin: "city",
    Role.district_admin: "district",
    Role.street_staff: "street",
    Role.station_staff: "community",
}
STAFF = tuple(STAFF_LEVELS)


class Unauthenticated(Exception):
    """No usable token: 401 with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """The caller. `id` is what every event records as its actor: an account id, or
    `system:<service>` for what a service does by itself."""

    id: str
    role: Role | None = None
    scope: str = ""

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_LEVELS

    def reaches(self, org_path: Sequence[str]) -> bool:
        """Whether staff scope covers a thing at `org_path` (district first, down to its node).
        One deployment serves one city, whose paths start below the city: a city admin
        reaches all of them."""
        if self.role is Role.city_admin:
            return True
        return self.is_staff and self.scope in org_path

    def is_volunteer(self, number: str) -> bool:
        return self.role is Role.volunteer and self.scope == number

    def leads(self, team_id: str) -> bool:
        return self.role is Role.team_leader and self.scope == team_id


def system(service: str) -> Actor:
    return Actor(f"system:{service}")


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as PEM: (private, public)."""
    private = Ed25519PrivateKey.generate()
    pem = serialization.Encoding.PEM
    return (
        private.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
    )


class TokenIssuer:
    """Signs access tokens: registry's alone."""

    def __init__(self, private_key_pem: bytes, lifetime: timedelta = ACCESS_TOKEN_LIFETIME) -> None:
        self._key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.lifetime = lifetime

    def issue(self, account_id: str, role: Role, scope: str, now: datetime) -> str:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": account_id,
            "role": role.value,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int((now + self.lifetime).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)  # type: ignore[arg-type]


class TokenVerifier:
    """Checks an access token with the public key and says who it names."""

    def __init__(self, public_key_pem: bytes, leeway_seconds: float = 10.0) -> None:
        self._key = serialization.load_pem_public_key(public_key_pem)
        self.leeway = leeway_seconds
        # Tokens verified already, with their expiry: a signature check costs ~50-100 µs, and a
        # caller sends the same token with every request until it expires.
        self._verified: dict[str, tuple[Actor, float]] = {}

    def actor(self, token: str) -> Actor:
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1] + self.leeway:  # as jwt.decode judges expiry
                return known[0]
            del self._verified[token]  # decoded again below, to say why it is refused
        actor, expires = self._decoded(token)
        if len(self._verified) >= _MOST_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (actor, expires)
        return actor

    def _decoded(self, token: str) -> tuple[Actor, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=[_ALGORITHM],  # never what the token's own header asks for
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the access token has expired: refresh it or sign in again") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the access token's signature is not Beacon's") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"not a Beacon access token: {error}") from None
        try:
            role = Role(claims.get("role"))
        except ValueError:
            raise Unauthenticated(f"the access token grants no known role ({claims.get('role')!r})") from None
        scope = claims.get("scope")
        if not isinstance(scope, str) or (role is not Role.partner and not scope):
            raise Unauthenticated("the access token names no scope for its role")
        return Actor(str(claims["sub"]), role, scope), float(claims["exp"])
