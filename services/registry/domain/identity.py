"""Who a person is, checked: resident ID numbers (GB 11643), mainland mobiles, masks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from shared.errors import Invalid
from shared.events.common import AgeBand, Gender

# GB 11643-1999: weights of the first 17 digits and the MOD 11-2 check characters.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


@dataclass(frozen=True)
class ResidentId:
    number: str
    birth_date: date
    gender: Gender


def parse_resident_id(value: str, today: date) -> ResidentId:
    """Check a resident ID number and read birth date and gender from it."""
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
    if born.year < 1900:
        raise Invalid("the birth date in the ID number is before 1900", field="id_number")
    return ResidentId(value, born, Gender.male if int(value[16]) % 2 else Gender.female)


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
    value = value.strip().removeprefix("+86").replace(" ", "").replace("-", "")
    if not _MOBILE.match(value):
        raise Invalid("a mainland mobile number is 11 digits starting 13-19", field="phone")
    return value


def check_name(value: str) -> str:
    value = " ".join(value.split())
    if not 1 <= len(value) <= 50:
        raise Invalid("a name is 1 to 50 characters", field="name")
    return value


def mask_id_number(value: str) -> str:
    return value[:6] + "*" * 8 + value[14:]


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[7:]


def mask_name(value: str) -> str:
    return value[0] + "*" * (len(value) - 1)
