"""Dispatch's part of the scope matrix: its seeded things and rules (see tests/infra/scope/__init__.py)."""

from __future__ import annotations

from tests.infra.scope import Request, Rules, World
from tests.infra.served import ServedCity

OPEN: Rules = {}
REQUESTS: dict[tuple[str, str], Request] = {}
PARAMETERS: set[str] = set()
CITY_WIDE: Rules = {}


def seed(city: ServedCity, world: World) -> None:
    """Nothing yet."""
