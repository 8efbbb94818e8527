"""Value types shared by event payloads."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from shared.logmask import mask_personal_data


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


class SiteKind(StrEnum):
    """Where a practice site stands: the kinds the districts count separately."""

    district_centre = "district_centre"
    street_institute = "street_institute"
    community = "community"
    grid = "grid"
    window_unit = "window_unit"
    public_place = "public_place"
    scenic_spot = "scenic_spot"
    park = "park"


class TeamKind(StrEnum):
    general = "general"
    professional = "professional"
    brand_project = "brand_project"


class VolunteerStatus(StrEnum):
    pending = "pending"
    verified = "verified"
    suspended = "suspended"
    deregistered = "deregistered"


TeamId = Annotated[str, StringConstraints(pattern=r"^T\d{6,10}$")]
# A sign-in account at registry (staff, team leader, volunteer or partner system).
AccountId = Annotated[str, StringConstraints(pattern=r"^AC\d{6,10}$")]
# Time credits set aside in points' time bank to pay for an order placed at dispatch.
ReservationId = Annotated[str, StringConstraints(pattern=r"^TR\d{8,12}$")]
SiteId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Skill = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


# The skills Beacon matches on (Zibo's fields of service and the common trades of volunteers).
# Anything else a volunteer offers goes into free tags, which are not matched on.
SKILLS = frozenset(
    {
        "first_aid", "traffic_guidance", "elder_care", "child_care", "tutoring", "legal_aid", "medical",
        "nursing", "psychological_support", "culture_art", "performance", "lecture", "environment",
        "science_popularisation", "public_security", "tourism_guidance", "smart_help_for_elderly",
        "sewing", "cooking", "cleaning", "repair", "driving", "photography", "it_support",
        "translation", "sign_language", "fitness_coaching", "gardening", "disaster_relief",
    }
)


def _no_personal_data(text: str) -> str:
    """Free text that goes into an event must not carry an ID number or a mobile number: events
    are public and personal data stays in registry's sealed columns."""
    if mask_personal_data(text) != text:
        raise ValueError("holds what reads as a resident ID number or a mobile number: personal data is not published")
    return text


Tag = Annotated[str, StringConstraints(min_length=1, max_length=20, strip_whitespace=True), AfterValidator(_no_personal_data)]
