"""Access tokens for tests: one key pair for the whole run, and a token for any role and scope."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.auth import Role, TokenIssuer, new_key_pair
from shared.envelope import utcnow

TEST_PRIVATE_KEY, TEST_PUBLIC_KEY = new_key_pair()
# Longer than any run of the suite: headers made once (ADMIN, a module's constants) must not
# expire halfway through it, as 15-minute tokens did once the suite passed 15 minutes.
TEST_TOKEN_LIFETIME = timedelta(hours=6)
_issuer = TokenIssuer(TEST_PRIVATE_KEY, lifetime=TEST_TOKEN_LIFETIME)


def token_for(role: Role | str, scope: str, *, account: str | None = None, at: datetime | None = None) -> str:
    role = Role(role)
    return _issuer.issue(account or f"test-{role.value}-{scope}", role, scope, at or utcnow())


def bearer(role: Role | str, scope: str, **options: object) -> dict[str, str]:
    """Request headers carrying a token for `role` over `scope`."""
    return {"Authorization": f"Bearer {token_for(role, scope, **options)}"}  # type: ignore[arg-type]


def expired(role: Role | str, scope: str) -> dict[str, str]:
    return bearer(role, scope, at=utcnow() - TEST_TOKEN_LIFETIME - timedelta(hours=1))


# What a test client sends unless a request says otherwise: a city admin, who reaches everything.
CITY = "370300"


def admin() -> dict[str, str]:
    """The city's admin, with a token fresh now (one made at import expires in 15 minutes)."""
    return bearer(Role.city_admin, CITY, account="test-admin")


ADMIN = admin()


def staff(account: str = "staff-7") -> dict[str, str]:
    """A staff member acting in the test city (as its admin: every staff route is theirs)."""
    return bearer(Role.city_admin, CITY, account=account)


def volunteer(number: str) -> dict[str, str]:
    """The volunteer themselves, signed in: their account is named after their number."""
    return bearer(Role.volunteer, number, account=number)
