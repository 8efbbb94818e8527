"""Dispatch's rules shared by its pure modules (orders, activities, attendance, records)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.errors import Invalid
from shared.events.registry import VolunteerRegistered


def aware(at: datetime, name: str) -> datetime:
    """Times carry their zone (the server clock, in UTC): a naive one is refused, naming it."""
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise Invalid(f"{name} must carry a time zone (the server clock, in UTC)", field=name)
    return at


# Registry's lifecycle, as far as dispatch cares: may this volunteer be sent?
DISPATCHABLE = {"verified"}


@dataclass(frozen=True)
class KnownVolunteer:
    """What dispatch needs to know of a volunteer to suggest them: no personal data."""

    volunteer_number: str
    community_code: str
    org_path: tuple[str, ...]
    age_band: str
    skills: tuple[str, ...]
    status: str = "pending"


def known_volunteer(registered: VolunteerRegistered, org_path: tuple[str, ...]) -> KnownVolunteer:
    return KnownVolunteer(
        registered.volunteer_number,
        registered.community_code,
        org_path,
        registered.age_band,
        tuple(registered.skills),
    )
