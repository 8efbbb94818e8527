"""Dispatch's rules, pure. (Orders, shifts and attendance come with issue 4.)"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events.registry import VolunteerRegistered

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
