"""Registry's rules, pure: the org tree, practice sites and real-name volunteers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from shared.errors import Conflict, Invalid
from shared.events.common import AgeBand, Gender, OrgLevel, PoliticalStatus, SiteLevel
from shared.events.registry import OrgUnitCreated, SiteOpened, VolunteerRegistered

# GB 11643-1999: weights of the first 17 digits and the MOD 11-2 check characters.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")

# What each level's code looks like, and which level may be its parent.
_CODE_SHAPE = {
    OrgLevel.city: re.compile(r"^\d{4}00$"),
    OrgLevel.district: re.compile(r"^\d{6}$"),
    OrgLevel.street: re.compile(r"^\d{9}000$"),
    OrgLevel.community: re.compile(r"^\d{12}$"),
    OrgLevel.grid: re.compile(r"^\d{15}$"),
}
_PARENT_LEVEL = {
    OrgLevel.district: OrgLevel.city,
    OrgLevel.street: OrgLevel.district,
    OrgLevel.community: OrgLevel.street,
    OrgLevel.grid: OrgLevel.community,
}
# Where a site of each level may stand.
_SITE_ORG_LEVEL = {
    SiteLevel.centre: {OrgLevel.district},
    SiteLevel.institute: {OrgLevel.street},
    SiteLevel.station: {OrgLevel.community},
    SiteLevel.point: {OrgLevel.community, OrgLevel.grid},
}


@dataclass(frozen=True)
class OrgUnit:
    code: str
    level: OrgLevel
    path: tuple[str, ...]  # from the district (or the city itself) down to this node


def create_org_unit(
    code: str, level: OrgLevel, name: str, population: int, party_members: int, parent: OrgUnit | None
) -> tuple[OrgUnitCreated, tuple[str, ...]]:
    """Decide a new node of the tree; return its event and its org path."""
    if not _CODE_SHAPE[level].match(code):
        raise Invalid(f"{code} is not a {level} division code", field="code")
    if party_members > population:
        raise Invalid("party members cannot outnumber the population", field="party_members")
    if level is OrgLevel.city:
        if parent is not None:
            raise Invalid("a city has no parent", field="parent_code")
        path: tuple[str, ...] = (code,)
    else:
        if parent is None:
            raise Invalid(f"a {level} needs its {_PARENT_LEVEL[level]}", field="parent_code")
        if parent.level is not _PARENT_LEVEL[level]:
            raise Invalid(f"the parent of a {level} is a {_PARENT_LEVEL[level]}, not a {parent.level}", field="parent_code")
        if level is not OrgLevel.district and not code.startswith(parent.code[: {OrgLevel.street: 6, OrgLevel.community: 9, OrgLevel.grid: 12}[level]]):
            raise Invalid(f"{code} does not lie under {parent.code}", field="code")
        path = (code,) if level is OrgLevel.district else (*parent.path, code)
    event = OrgUnitCreated(
        code=code,
        parent_code=parent.code if parent else None,
        level=level,
        name=name,
        population=population,
        party_members=party_members,
    )
    return event, path


def open_site(site_id: str, org_unit: OrgUnit, level: SiteLevel, kind: str, name: str) -> SiteOpened:
    if org_unit.level not in _SITE_ORG_LEVEL[level]:
        allowed = " or ".join(sorted(_SITE_ORG_LEVEL[level]))
        raise Invalid(f"a {level} stands in a {allowed}, not a {org_unit.level}", field="org_unit_code")
    return SiteOpened(site_id=site_id, org_unit_code=org_unit.code, level=level, kind=kind, name=name)


@dataclass(frozen=True)
class ResidentId:
    birth_date: date
    gender: Gender


def parse_resident_id(value: str, today: date) -> ResidentId:
    """Check a resident ID number (GB 11643) and read birth date and gender from it."""
    value = value.strip().upper()
    if not _ID_SHAPE.match(value):
        raise Invalid("a resident ID number is 17 digits and a check digit or X", field="id_number")
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != value[17]:
        raise Invalid("the check character does not match (GB 11643 MOD 11-2)", field="id_number")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise Invalid("the birth date in the ID number does not exist", field="id_number") from None
    if born > today:
        raise Invalid("the birth date in the ID number is in the future", field="id_number")
    return ResidentId(born, Gender.male if int(value[16]) % 2 else Gender.female)


def age_band(born: date, today: date) -> AgeBand:
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < 18:
        return AgeBand.under_18
    if age < 35:
        return AgeBand.from_18_to_34
    if age < 60:
        return AgeBand.from_35_to_59
    return AgeBand.silver


def check_mobile(value: str) -> str:
    value = value.strip().removeprefix("+86")
    if not _MOBILE.match(value):
        raise Invalid("a mainland mobile number is 11 digits starting 13-19", field="phone")
    return value


def register_volunteer(
    number: str,
    id_number: str,
    phone: str,
    community: OrgUnit,
    political_status: PoliticalStatus,
    skills: list[str],
    today: date,
    holder_of_same_id: str | None,
) -> VolunteerRegistered:
    resident = parse_resident_id(id_number, today)
    check_mobile(phone)
    if community.level is not OrgLevel.community:
        raise Invalid(f"{community.code} is a {community.level}, not a community", field="community_code")
    if holder_of_same_id is not None:
        raise Conflict(
            f"this ID number is already registered as volunteer {holder_of_same_id}",
            field="id_number",
            volunteer_number=holder_of_same_id,
        )
    return VolunteerRegistered(
        volunteer_number=number,
        community_code=community.code,
        age_band=age_band(resident.birth_date, today),
        gender=resident.gender,
        political_status=political_status,
        skills=sorted({s.strip() for s in skills if s.strip()}),
    )


def mask_id_number(value: str) -> str:
    return value[:6] + "*" * 8 + value[14:]


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[7:]
