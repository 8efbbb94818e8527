"""The scope half of the authorization matrix: every operation, for every role it admits, asked
about something inside the caller's reach and, one path parameter at a time, about something
outside it, in a city seeded with two districts (tests/infra/scope/). Inside gets past the check
(whatever the operation then says of the request); outside is 404, word for word the answer for
what does not exist (shared/auth.py); a list shows someone inside nothing of the outside.

Generated from the OpenAPI documents: an operation whose path parameter, or whose scope riding in
its body or query, the seeded city has no rule for fails here, so no endpoint goes unchecked. The
city admin reaches everything and so has no outside. Public operations have neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from shared.auth import Role
from shared.web import ANYONE
from tests.infra.nats import nats_server
from tests.infra.scope import Call, World
from tests.infra.scope import dispatch as dispatch_rules
from tests.infra.scope import points as points_rules
from tests.infra.scope import registry as registry_rules
from tests.infra.scope import reporting as reporting_rules
from tests.infra.served import ServedCity, operations, served_city

RULES = {"registry": registry_rules, "dispatch": dispatch_rules, "points": points_rules, "reporting": reporting_rules}
UNSCOPED = {"level": "1"}  # path parameters that name nothing in the org tree (a star level)
OPERATIONS = [op for op in operations() if op.roles != (ANYONE,)]
_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Case:
    service: str
    method: str
    path: str
    role: Role
    outside: str | None  # the path parameter asked about outside, "body" for the body's scope, None inside

    @property
    def label(self) -> str:
        where = "inside" if self.outside is None else f"outside {self.outside}"
        return f"{self.service} {self.method} {self.path} as {self.role.value} {where}"


def _open_to(service: str, method: str, path: str, parameter: str) -> frozenset[Role]:
    """The roles that reach what `parameter` names anywhere in the city (see the rules' OPEN)."""
    opened = RULES[service].OPEN.get((method, path), {})
    return frozenset(opened.get(parameter, ())) | frozenset(opened.get("*", ()))


def _cases() -> list[Case]:
    """Reads first, then the outside commands (which must change nothing), then commands inside
    that are sent a body, and last those without one, which do what they say (so that they cannot
    unsettle the cases before them)."""
    reads, outside, with_body, acting = [], [], [], []
    for op in OPERATIONS:
        request = RULES[op.service].REQUESTS.get((op.method, op.path))
        for role in map(Role, op.roles):
            inside = Case(op.service, op.method, op.path, role, None)
            (reads if op.method == "GET" else with_body if op.has_body else acting).append(inside)
            if role is Role.city_admin:
                continue
            askable = [p for p in _PARAMETER.findall(op.path) if p not in UNSCOPED]
            if request is not None and request.outside is not None:
                askable.append("body")
            for parameter in askable:
                if role not in _open_to(op.service, op.method, op.path, parameter):
                    (reads if op.method == "GET" else outside).append(
                        Case(op.service, op.method, op.path, role, parameter)
                    )
    return reads + outside + with_body + sorted(acting, key=lambda case: case.method == "DELETE")


CASES = _cases()


def test_every_operation_has_a_scope_rule() -> None:
    """Every guarded operation's path parameters are seeded; one without any says where its scope
    rides (a body or query rule) or why it has none."""
    missing = []
    for op in OPERATIONS:
        rules = RULES[op.service]
        parameters = _PARAMETER.findall(op.path)
        if (
            not parameters
            and (op.method, op.path) not in rules.REQUESTS
            and (op.method, op.path) not in rules.CITY_WIDE
        ):
            missing.append(f"{op.label}: no body or query rule, and not city-wide")
        for parameter in parameters:
            if parameter not in UNSCOPED and parameter not in set().union(*(r.PARAMETERS for r in RULES.values())):
                missing.append(f"{op.label}: nothing seeded for {{{parameter}}}")
    assert missing == []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedCity, World]]:
    with nats_server() as nats_url, served_city(nats_url, tmp_path_factory.mktemp("scope")) as city:
        seeded = World(unscoped=dict(UNSCOPED))
        for rules in RULES.values():  # in the order events flow: registry first
            rules.seed(city, seeded)
        for rules in RULES.values():  # what follows from the others' seeds (registry certifies dispatch's records)
            if hasattr(rules, "seed_late"):
                rules.seed_late(city, seeded)
        yield city, seeded


def test_the_seeds_fill_every_parameter_they_declare(world: tuple[ServedCity, World]) -> None:
    _, seeded = world
    for service, rules in RULES.items():
        for parameter in rules.PARAMETERS:
            assert seeded.knows(service, parameter), f"{service} declares {{{parameter}}} but seeds nothing for it"
            key = f"{service}:{parameter}" if f"{service}:{parameter}" in seeded.inside else parameter
            assert seeded.inside[key] != seeded.outside[key]


def _call(city: ServedCity, seeded: World, case: Case) -> httpx.Response:
    def value(match: re.Match[str]) -> str:
        parameter = match.group(1)
        return seeded.value(case.service, case.role, parameter, inside=parameter != case.outside)

    request = RULES[case.service].REQUESTS.get((case.method, case.path))
    call = (
        request.build(seeded, case.outside != "body")
        if request is not None
        else Call(json={} if case.method != "GET" else None)
    )
    return httpx.request(
        case.method, city.urls[case.service] + _PARAMETER.sub(value, case.path), params=call.params, json=call.json,
        content=call.content, headers={**seeded.headers(case.role), **call.headers}, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_scope(world: tuple[ServedCity, World], case: Case) -> None:
    city, seeded = world
    answer = _call(city, seeded, case)
    assert answer.status_code < 500, answer.text
    request = RULES[case.service].REQUESTS.get((case.method, case.path))
    if case.outside is None:
        assert answer.status_code not in (401, 403, 404), answer.text
    elif case.outside == "body" and request is not None and request.outside == "hidden":
        assert answer.status_code == 200, answer.text
        assert [marker for marker in seeded.outside_markers() if marker in answer.text] == [], answer.text
    else:
        assert answer.status_code == 404, answer.text
        assert answer.json()["title"] == "NotFound", answer.text
