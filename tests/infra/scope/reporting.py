"""Reporting's part of the scope matrix: its rules (see tests/infra/scope/__init__.py).

Figures are asked of a node of the org tree (`{code}`: registry's seed gives a community of each
district, which every staff actor of A reaches); staff reach the nodes on whose path their own
node lies, the city admin every node (services/reporting/api.py `node_in_reach`). The seed waits
until the projection has the tree from registry's stream."""

from __future__ import annotations

import time

from tests.infra.scope import Request, Rules, World, client
from tests.infra.served import ServedCity

OPEN: Rules = {}
REQUESTS: dict[tuple[str, str], Request] = {}
PARAMETERS = {"code"}  # registry's seed fills it: the same community code names reporting's node
CITY_WIDE: Rules = {
    ("GET", "/admin/rebuild"): "the rebuild of every figure of the city (city admin only)",
    ("POST", "/admin/rebuild"): "the rebuild of every figure of the city (city admin only)",
}


def seed(city: ServedCity, world: World) -> None:
    """Nothing of its own: reporting only reads. It waits to know both districts' communities."""
    deadline = time.monotonic() + 30
    with client(city, "reporting") as reporting:
        for code in (world.inside["code"], world.outside["code"]):
            while (answer := reporting.get(f"/figures/{code}")).status_code != 200:
                if time.monotonic() > deadline:
                    raise AssertionError(f"reporting does not know {code}: {answer.text}")
                time.sleep(0.05)
