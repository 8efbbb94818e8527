"""The seeded city the scope matrix (tests/integration/test_scope_matrix.py) acts on.

Two districts: things in district A are inside the reach of every test actor (staff of A's chain,
the leader of team A, volunteer A); things in district B are inside nobody's but the city
admin's, who reaches everything and so is never asked about the outside. Each service's module
here seeds its things through the public API and says, for its operations, what the matrix
cannot read off the OpenAPI document:

- `OPEN`: (METHOD, path) -> {path parameter: roles that reach it city-wide}, e.g. a volunteer may
  look at any shift in the city to sign up for it. Say why beside each entry.
- `REQUESTS`: (METHOD, path) -> `Request`: the body or query an operation is sent, for
  operations whose scope rides in the body or query (creating a team at a site, listing orders
  of a community), and what asking about the outside there gets.
- `PARAMETERS`: the path parameters its seed fills in `World.inside` and `World.outside`.
- `CITY_WIDE`: (METHOD, path) -> why the operation names nothing in the org tree (the star
  thresholds, say), so it has no inside or outside.
- `seed_late` (optional): seeding that needs every module's `seed` done first (a certificate over
  the service records dispatch's seed confirmed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from shared.auth import Role
from tests.infra.auth import ADMIN, token_for
from tests.infra.served import ServedCity

CITY = "370300"
DISTRICT_A, STREET_A, COMMUNITY_A = "370303", "370303001000", "370303001001"
DISTRICT_B, STREET_B, COMMUNITY_B = "370302", "370302001000", "370302001001"
TREE = f"""code,parent_code,level,name,population,party_members
{CITY},,city,淄博市,4700000,300000
{DISTRICT_A},{CITY},district,张店区,1000000,60000
{STREET_A},{DISTRICT_A},street,车站街道,80000,5000
{COMMUNITY_A},{STREET_A},community,和平社区,8000,500
{DISTRICT_B},{CITY},district,淄川区,600000,40000
{STREET_B},{DISTRICT_B},street,般阳路街道,50000,3000
{COMMUNITY_B},{STREET_B},community,东关社区,6000,400
"""


@dataclass
class Call:
    """What an operation is sent besides its path: a JSON body, a query, raw content."""

    json: Any = None
    params: dict[str, Any] | None = None
    content: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """How to call an operation: `build(world, inside)` makes the call, naming things inside the
    actors' reach or outside it. `outside` says what the outside call gets: "404" (what it names
    is unknown), "hidden" (a list: 200 and nothing of the outside in it), or None (the body names
    nothing scoped: only the path's parameters have an outside, and `inside` is always True)."""

    build: Callable[[World, bool], Call]
    outside: Literal["404", "hidden"] | None = "404"


@dataclass
class World:
    """Path parameter values inside and outside the actors' reach, and the actors themselves."""

    inside: dict[str, str] = field(default_factory=dict)
    outside: dict[str, str] = field(default_factory=dict)
    # Where one role's inside value differs from the common one (its own account, say).
    inside_for: dict[tuple[Role, str], str] = field(default_factory=dict)
    # Parameters that name nothing in the org tree (a star level): the same value either way.
    unscoped: dict[str, str] = field(default_factory=dict)
    # Each role's (account id, scope) in its tokens.
    actors: dict[Role, tuple[str, str]] = field(default_factory=dict)
    # Anything else a module's seed wants to hand to a later module (ids, numbers).
    facts: dict[str, str] = field(default_factory=dict)

    def headers(self, role: Role) -> dict[str, str]:
        account, scope = self.actors[role]
        return {"Authorization": f"Bearer {token_for(role, scope, account=account)}"}

    def value(self, service: str, role: Role, parameter: str, inside: bool = True) -> str:
        """The value of a path parameter; a key `<service>:<parameter>` wins over `<parameter>`
        where services name different things alike (`aggregate_id`)."""
        if parameter in self.unscoped:
            return self.unscoped[parameter]
        key = f"{service}:{parameter}"
        key = key if key in self.inside or key in self.outside else parameter
        if not inside:
            return self.outside[key]
        return self.inside_for.get((role, key), self.inside[key])

    def knows(self, service: str, parameter: str) -> bool:
        return parameter in self.unscoped or any(k in self.inside for k in (f"{service}:{parameter}", parameter))

    def outside_markers(self) -> set[str]:
        """What must never show in an answer to an actor inside A: the values naming B's things."""
        return {value for key, value in self.outside.items() if value not in self.inside.values()}


Rules = dict[tuple[str, str], Any]


def client(city: ServedCity, service: str) -> httpx.Client:
    """A client of one service as the city's admin."""
    return httpx.Client(base_url=city.urls[service], headers=ADMIN, timeout=30)


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()
