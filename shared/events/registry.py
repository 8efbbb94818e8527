"""Registry's public events: who and where (org units, practice sites, volunteers)."""

from __future__ import annotations

from pydantic import Field

from shared.catalog import Event, catalog
from shared.events.common import (
    AgeBand,
    DivisionCode,
    Gender,
    OrgLevel,
    PoliticalStatus,
    SiteLevel,
    VolunteerNumber,
)


@catalog.register(context="registry", aggregate="orgunit", action="created")
class OrgUnitCreated(Event):
    """A node of the administrative tree (city, district, street or town, community or village,
    grid) now exists, with the population and party-member count that reported shares divide by.
    The envelope's `org_path` runs from the district down to this node."""

    code: DivisionCode = Field(description="Administrative division code (6 or 12 digits; grids 15).")
    parent_code: DivisionCode | None = Field(description="The parent node; none for the city.")
    level: OrgLevel
    name: str = Field(min_length=1, max_length=100)
    population: int = Field(ge=0)
    party_members: int = Field(ge=0)


@catalog.register(context="registry", aggregate="site", action="opened")
class SiteOpened(Event):
    """A civilisation-practice site opened: a centre for a district, an institute for a street,
    a station for a community, or a point (grid, window unit, public place, scenic spot, park)."""

    site_id: str = Field(min_length=1, max_length=40)
    org_unit_code: DivisionCode
    level: SiteLevel
    kind: str = Field(min_length=1, max_length=40, description="community, window_unit, public_place, scenic_spot, park")
    name: str = Field(min_length=1, max_length=100)


@catalog.register(context="registry", aggregate="volunteer", action="registered")
class VolunteerRegistered(Event):
    """A person registered as a volunteer under their real name. The event carries no personal
    data: only the volunteer number, home community, age band and gender at registration,
    political status and skills. The envelope's `org_path` is district, street, community."""

    volunteer_number: VolunteerNumber
    community_code: DivisionCode
    age_band: AgeBand
    gender: Gender
    political_status: PoliticalStatus
    skills: list[str] = Field(default_factory=list, max_length=50)
