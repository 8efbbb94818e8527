"""Registry's HTTP routes, one module per area; each parses, calls a handler, shapes the answer."""

from __future__ import annotations

from fastapi import Request

from services.registry.handlers import Registry

# Staff roles that may see a volunteer's name, ID number and phone in clear.
PERSONAL_DATA_ROLES = ("city_admin", "district_admin", "street_staff", "station_staff")


def registry_of(request: Request) -> Registry:
    return request.app.state.registry
