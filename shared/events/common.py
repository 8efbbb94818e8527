"""Value types shared by event payloads."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints


class OrgLevel(StrEnum):
    city = "city"
    district = "district"
    street = "street"
    community = "community"
    grid = "grid"


class SiteLevel(StrEnum):
    """Civilisation-practice tree: centre (district), institute (street), station (community), point."""

    centre = "centre"
    institute = "institute"
    station = "station"
    point = "point"


class PoliticalStatus(StrEnum):
    party_member = "party_member"
    league_member = "league_member"
    public_servant = "public_servant"
    masses = "masses"


class Gender(StrEnum):
    female = "female"
    male = "male"


class AgeBand(StrEnum):
    """Age at registration, in the bands the reports use (silver-age = 60 and over)."""

    under_18 = "under_18"
    from_18_to_34 = "18_34"
    from_35_to_59 = "35_59"
    silver = "60_plus"


DivisionCode = Annotated[str, StringConstraints(pattern=r"^\d{6}(\d{6}(\d{3})?)?$")]
VolunteerNumber = Annotated[str, StringConstraints(pattern=r"^V\d{6,12}$")]
