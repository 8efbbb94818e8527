"""The authorization matrix, generated from the four services' OpenAPI documents: every operation
names who may call it (`x-beacon-roles`, from shared.web.allow), and each one is tried, one test
each, without a token, with a forged and an expired token, and with a token of every role.

A role the operation names gets past the door (what it then reaches is the route's own check);
any other role gets 403 before anything is read; no usable token gets 401 with the reason. An
operation without a rule fails here, so a new endpoint cannot go unguarded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from shared.auth import Role, TokenIssuer, new_key_pair
from shared.envelope import utcnow
from shared.web import ANYONE
from tests.infra.auth import CITY, bearer, expired
from tests.infra.nats import nats_server
from tests.infra.served import Operation, ServedCity, operations, served_city

# Each role's scope in the test city; what it reaches is not this test's concern.
SCOPES = {
    Role.city_admin: CITY, Role.district_admin: "370303", Role.street_staff: "370303001000",
    Role.station_staff: "370303001001", Role.team_leader: "T00000001", Role.volunteer: "V00000001",
    Role.partner: "",
}  # fmt: skip
_PARAMETER = re.compile(r"\{(\w+)\}")


OPERATIONS = operations()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCity]:
    with nats_server() as nats_url, served_city(nats_url, tmp_path_factory.mktemp("matrix")) as served:
        yield served


def _call(city: ServedCity, operation: Operation, headers: dict[str, str]) -> httpx.Response:
    url = city.urls[operation.service] + _PARAMETER.sub("x1", operation.path)
    body = {} if operation.method in ("POST", "PUT", "PATCH") else None
    return httpx.request(operation.method, url, headers=headers, json=body, timeout=30)


def test_every_operation_names_who_may_call_it() -> None:
    unguarded = [op.label for op in OPERATIONS if not op.roles]
    assert unguarded == []
    assert len(OPERATIONS) > 100


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_without_a_usable_token_only_public_operations_answer(city: ServedCity, operation: Operation) -> None:
    other_key = TokenIssuer(new_key_pair()[0]).issue("intruder", Role.city_admin, CITY, utcnow())
    attempts = {
        "none": {},
        "forged": {"Authorization": f"Bearer {other_key}"},
        "expired": expired(Role.city_admin, CITY),
        "garbage": {"Authorization": "Bearer not-a-token"},
    }
    for name, headers in attempts.items():
        answer = _call(city, operation, headers)
        if operation.roles == (ANYONE,) and name == "none":
            assert answer.status_code != 401, answer.text
        elif operation.roles != (ANYONE,):
            assert answer.status_code == 401, f"{name}: {answer.status_code} {answer.text}"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert answer.json()["detail"]  # the reason


CASES = [(op, role) for op in OPERATIONS for role in Role]


@pytest.mark.parametrize(("operation", "role"), CASES, ids=[f"{op.label} as {role.value}" for op, role in CASES])
def test_each_role_passes_only_where_the_operation_names_it(city: ServedCity, operation: Operation, role: Role) -> None:
    answer = _call(city, operation, bearer(role, SCOPES[role]))
    if ANYONE in operation.roles or role.value in operation.roles:
        assert answer.status_code not in (401, 403), answer.text
        assert answer.status_code < 500, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["title"] == "Forbidden"
