"""Volunteers: registration, lifecycle, party-member report-in and transfer, certifications,
insurance records.

A volunteer's state is folded from their events; each command returns the events it decides,
or none when it changes nothing (so repeating a command is harmless), or raises a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from services.registry.domain.identity import ResidentId, age_band
from services.registry.domain.org import OrgUnit
from shared.catalog import Event
from shared.errors import Conflict, Invalid
from shared.events.common import SKILLS, OrgLevel, PoliticalStatus, VolunteerStatus
from shared.events.registry import (
    CertificationExpired,
    CertificationGranted,
    PartyMemberReportedIn,
    VolunteerDeregistered,
    VolunteerInsured,
    VolunteerProfileUpdated,
    VolunteerReactivated,
    VolunteerRegistered,
    VolunteerSuspended,
    VolunteerTransferred,
    VolunteerVerified,
)
from shared.logmask import mask_personal_data


@dataclass(frozen=True)
class Insurance:
    """One recorded insurance: insurer and kind of cover as codes, the days it covers (both included)."""

    insurer: str
    cover: str
    valid_from: date
    valid_until: date


@dataclass(frozen=True)
class Volunteer:
    number: str
    status: VolunteerStatus
    community_code: str
    org_path: tuple[str, ...]
    political_status: PoliticalStatus
    skills: tuple[str, ...]
    tags: tuple[str, ...] = ()
    reported_in_at: str | None = None  # the community a party member reported in to
    certifications: dict[str, date | None] = field(default_factory=dict)
    insurance: tuple[Insurance, ...] = ()  # as recorded, oldest first
    version: int = 0

    @property
    def is_party_member(self) -> bool:
        return self.political_status is PoliticalStatus.party_member


def fold(history: Iterable[tuple[tuple[str, ...], Event]]) -> Volunteer | None:
    """The volunteer as their events left them: (org_path, event) pairs in version order."""
    volunteer: Volunteer | None = None
    for org_path, event in history:
        volunteer = evolve(volunteer, org_path, event)
    return volunteer


def evolve(volunteer: Volunteer | None, org_path: tuple[str, ...], event: Event) -> Volunteer:
    if isinstance(event, VolunteerRegistered):
        return Volunteer(
            event.volunteer_number,
            VolunteerStatus.pending,
            event.community_code,
            org_path,
            event.political_status,
            tuple(event.skills),
            tuple(event.tags),
            version=1,
        )
    assert volunteer is not None, f"{type(event).__name__} before registration"
    bumped = replace(volunteer, version=volunteer.version + 1)
    match event:
        case VolunteerVerified() | VolunteerReactivated():
            return replace(bumped, status=VolunteerStatus.verified)
        case VolunteerSuspended():
            return replace(bumped, status=VolunteerStatus.suspended)
        case VolunteerDeregistered():
            return replace(bumped, status=VolunteerStatus.deregistered)
        case VolunteerProfileUpdated():
            return replace(bumped, political_status=event.political_status, skills=tuple(event.skills), tags=tuple(event.tags))
        case PartyMemberReportedIn():
            return replace(bumped, reported_in_at=event.community_code)
        case VolunteerTransferred():
            # The party relationship moves with the member (关系转接): reported in at the new place.
            moved_report = event.to_community_code if volunteer.reported_in_at else None
            return replace(bumped, community_code=event.to_community_code, org_path=org_path, reported_in_at=moved_report)
        case CertificationGranted():
            return replace(bumped, certifications={**volunteer.certifications, event.certification: event.expires_on})
        case CertificationExpired():
            remaining = {k: v for k, v in volunteer.certifications.items() if k != event.certification}
            return replace(bumped, certifications=remaining)
        case VolunteerInsured():
            insurance = Insurance(event.insurer, event.cover, event.valid_from, event.valid_until)
            return replace(bumped, insurance=(*volunteer.insurance, insurance))
    return bumped


def normalise_skills(skills: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip().lower() for s in skills if s.strip()})
    unknown = [s for s in cleaned if s not in SKILLS]
    if unknown:
        raise Invalid(f"not in the skill taxonomy: {', '.join(unknown)} (put it in tags instead)", field="skills")
    return cleaned


def normalise_tags(tags: Iterable[str], name: str = "") -> list[str]:
    """The tags as published: trimmed, sorted, each once. Tags go out in events, so one that holds
    an ID number, a mobile number or the volunteer's own name is refused (when the name is known)."""
    cleaned = sorted({" ".join(t.split()) for t in tags if t.strip()})
    if len(cleaned) > 10 or any(len(t) > 20 for t in cleaned):
        raise Invalid("at most 10 tags of at most 20 characters", field="tags")
    for tag in cleaned:
        if mask_personal_data(tag) != tag or (name and name in tag):
            raise Invalid(f"the tag {tag!r} holds personal data (a name, ID or mobile number), which events never carry", field="tags")
    return cleaned


class AlreadyRegistered(Conflict):
    """The ID number is a registered volunteer's (409); `volunteer_number` in the details only for
    whoever reaches that volunteer."""


def register(
    number: str,
    resident: ResidentId,
    community: OrgUnit,
    political_status: PoliticalStatus,
    skills: Iterable[str],
    consented_at: datetime | None,
    today: date,
    holder_of_same_id: str | None,
    tags: Iterable[str] = (),
    name: str = "",
    *,
    holder_shown: bool = True,
) -> VolunteerRegistered:
    """A volunteer's registration. `holder_shown`: whether a refusal for an ID number already
    registered may name its holder (to whoever reaches them; to anyone else the number would tie
    a person's ID number to the volunteer number their events carry)."""
    if community.level is not OrgLevel.community:
        raise Invalid(f"{community.code} is a {community.level}, not a community", field="community_code")
    if consented_at is None:
        raise Invalid("registration needs the volunteer's consent to the use of their data", field="consent")
    if holder_of_same_id is not None and holder_shown:
        raise AlreadyRegistered(
            f"this ID number is already registered as volunteer {holder_of_same_id}",
            field="id_number",
            volunteer_number=holder_of_same_id,
        )
    if holder_of_same_id is not None:
        raise AlreadyRegistered(
            "this ID number is already registered: its volunteer can sign in, or their community's staff can look it up",
            field="id_number",
        )
    return VolunteerRegistered(
        volunteer_number=number,
        community_code=community.code,
        age_band=age_band(resident.birth_date, today),
        gender=resident.gender,
        political_status=political_status,
        skills=normalise_skills(skills),
        tags=normalise_tags(tags, name),
        consented_at=consented_at,
    )


def _refuse_unless(volunteer: Volunteer, allowed: set[VolunteerStatus], doing: str) -> None:
    if volunteer.status not in allowed:
        raise Conflict(f"volunteer {volunteer.number} is {volunteer.status}: cannot {doing}", state=volunteer.status)


def verify(volunteer: Volunteer) -> list[Event]:
    if volunteer.status is VolunteerStatus.verified:
        return []
    _refuse_unless(volunteer, {VolunteerStatus.pending}, "verify")
    return [VolunteerVerified(volunteer_number=volunteer.number)]


def suspend(volunteer: Volunteer, reason: str) -> list[Event]:
    if volunteer.status is VolunteerStatus.suspended:
        return []
    _refuse_unless(volunteer, {VolunteerStatus.pending, VolunteerStatus.verified}, "suspend")
    return [VolunteerSuspended(volunteer_number=volunteer.number, reason=reason)]


def reactivate(volunteer: Volunteer) -> list[Event]:
    if volunteer.status is VolunteerStatus.verified:
        return []
    _refuse_unless(volunteer, {VolunteerStatus.suspended}, "reactivate")
    return [VolunteerReactivated(volunteer_number=volunteer.number)]


def deregister(volunteer: Volunteer, on_request: bool) -> list[Event]:
    if volunteer.status is VolunteerStatus.deregistered:
        return []
    return [VolunteerDeregistered(volunteer_number=volunteer.number, on_request=on_request)]


def update_profile(
    volunteer: Volunteer, political_status: PoliticalStatus, skills: Iterable[str], tags: Iterable[str] = ()
) -> list[Event]:
    _refuse_unless(volunteer, {VolunteerStatus.pending, VolunteerStatus.verified, VolunteerStatus.suspended}, "update the profile")
    skills, tags = normalise_skills(skills), normalise_tags(tags)
    if (political_status, tuple(skills), tuple(tags)) == (volunteer.political_status, volunteer.skills, volunteer.tags):
        return []
    return [VolunteerProfileUpdated(volunteer_number=volunteer.number, political_status=political_status, skills=skills, tags=tags)]


def report_in(volunteer: Volunteer) -> list[Event]:
    """A party member reports in to the community where they live (their home community)."""
    _refuse_unless(volunteer, {VolunteerStatus.pending, VolunteerStatus.verified}, "report in")
    if not volunteer.is_party_member:
        raise Invalid("only party members report in to their community", field="political_status")
    if volunteer.reported_in_at == volunteer.community_code:
        return []
    return [PartyMemberReportedIn(volunteer_number=volunteer.number, community_code=volunteer.community_code)]


def transfer(volunteer: Volunteer, destination: OrgUnit, approved_by: str) -> list[Event]:
    _refuse_unless(volunteer, {VolunteerStatus.pending, VolunteerStatus.verified, VolunteerStatus.suspended}, "transfer")
    if destination.level is not OrgLevel.community:
        raise Invalid(f"{destination.code} is a {destination.level}, not a community", field="to_community_code")
    if destination.code == volunteer.community_code:
        raise Invalid("the volunteer already belongs to that community", field="to_community_code")
    return [
        VolunteerTransferred(
            volunteer_number=volunteer.number,
            from_community_code=volunteer.community_code,
            from_org_path=list(volunteer.org_path),
            to_community_code=destination.code,
            approved_by=approved_by,
        )
    ]


def grant_certification(volunteer: Volunteer, certification: str, granted_on: date, expires_on: date | None) -> list[Event]:
    _refuse_unless(volunteer, {VolunteerStatus.pending, VolunteerStatus.verified, VolunteerStatus.suspended}, "certify")
    if expires_on is not None and expires_on <= granted_on:
        raise Invalid("a certification expires after it is granted", field="expires_on")
    name = certification.strip().lower()
    if not name.isascii() or not name.replace("_", "").isalnum() or not name[:1].isalpha():
        raise Invalid("a certification is named in lower case letters, digits and _ (e.g. first_aid)", field="certification")
    if name in volunteer.certifications and volunteer.certifications[name] == expires_on:
        return []
    return [CertificationGranted(volunteer_number=volunteer.number, certification=name, granted_on=granted_on, expires_on=expires_on)]


def expire_certifications(volunteer: Volunteer, today: date) -> list[Event]:
    return [
        CertificationExpired(volunteer_number=volunteer.number, certification=name, expired_on=expires)
        for name, expires in sorted(volunteer.certifications.items())
        if expires is not None and expires <= today
    ]


def _code(value: str, field: str, example: str) -> str:
    code = value.strip().lower()
    if not code.isascii() or not code.replace("_", "").isalnum() or not code[:1].isalpha():
        raise Invalid(f"{field} is a code in lower case letters, digits and _ (e.g. {example})", field=field)
    return code


def record_insurance(
    volunteer: Volunteer, insurer: str, cover: str, valid_from: date, valid_until: date
) -> list[Event]:
    """Record the volunteer's insurance (risky work needs it). Codes only: the policy number and
    the insured's name stay on the paper the station keeps."""
    _refuse_unless(volunteer, {VolunteerStatus.pending, VolunteerStatus.verified, VolunteerStatus.suspended}, "insure")
    if valid_until < valid_from:
        raise Invalid("an insurance ends on or after the day it starts", field="valid_until")
    insurance = Insurance(_code(insurer, "insurer", "picc"), _code(cover, "cover", "accident"), valid_from, valid_until)
    if insurance in volunteer.insurance:
        return []
    return [
        VolunteerInsured(
            volunteer_number=volunteer.number,
            insurer=insurance.insurer,
            cover=insurance.cover,
            valid_from=valid_from,
            valid_until=valid_until,
        )
    ]
