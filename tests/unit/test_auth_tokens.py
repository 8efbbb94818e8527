"""Access tokens as a service checks them: a token it verified once is remembered, but only the
exact token, and only until it expires."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from shared.auth import Actor, Role, TokenIssuer, TokenVerifier, Unauthenticated, new_key_pair
from shared.devkeys import public_pem_of
from shared.envelope import utcnow

SIGNING_KEY = new_key_pair()[0]
VOLUNTEER = Actor("AC00000001", Role.volunteer, "V00000001")


def test_a_token_verified_once_names_the_same_caller_each_time() -> None:
    token = TokenIssuer(SIGNING_KEY).issue(VOLUNTEER.id, Role.volunteer, "V00000001", utcnow())
    verifier = TokenVerifier(public_pem_of(SIGNING_KEY))

    assert [verifier.actor(token) for _ in range(3)] == [VOLUNTEER] * 3


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    lifetime = timedelta(hours=1)
    # Issued so long ago that it expires in a second or two (the claims count whole seconds).
    issued = utcnow() - lifetime + timedelta(seconds=1.5)
    token = TokenIssuer(SIGNING_KEY, lifetime).issue(VOLUNTEER.id, Role.volunteer, "V00000001", issued)
    verifier = TokenVerifier(public_pem_of(SIGNING_KEY), leeway_seconds=0)
    assert verifier.actor(token) == VOLUNTEER

    time.sleep(2.1)

    with pytest.raises(Unauthenticated, match="expired"):
        verifier.actor(token)


def test_a_token_altered_after_its_genuine_self_was_verified_is_still_refused() -> None:
    token = TokenIssuer(SIGNING_KEY).issue(VOLUNTEER.id, Role.volunteer, "V00000001", utcnow())
    verifier = TokenVerifier(public_pem_of(SIGNING_KEY))
    verifier.actor(token)
    header, claims, signature = token.split(".")
    forged = f"{header}.{claims}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"

    with pytest.raises(Unauthenticated):
        verifier.actor(forged)


def test_a_token_of_another_key_is_refused_by_a_verifier_that_remembers_others() -> None:
    ours = TokenIssuer(SIGNING_KEY).issue(VOLUNTEER.id, Role.volunteer, "V00000001", utcnow())
    theirs = TokenIssuer(new_key_pair()[0]).issue(VOLUNTEER.id, Role.volunteer, "V00000001", utcnow())
    verifier = TokenVerifier(public_pem_of(SIGNING_KEY))
    verifier.actor(ours)

    with pytest.raises(Unauthenticated, match="signature"):
        verifier.actor(theirs)
