"""Registry's pure rules: ID numbers, phones, the org tree, sites."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.registry.domain import identity, org, volunteers
from shared.errors import Conflict, Invalid
from shared.events.common import AgeBand, Gender, OrgLevel, PoliticalStatus, SiteKind, SiteLevel
from tests.factories import resident_id

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 8, tzinfo=UTC)
CITY = org.OrgUnit("370300", OrgLevel.city, ("370300",))
DISTRICT = org.OrgUnit("370303", OrgLevel.district, ("370303",), "370300")
STREET = org.OrgUnit("370303001000", OrgLevel.street, ("370303", "370303001000"), "370303")
COMMUNITY = org.OrgUnit("370303001001", OrgLevel.community, ("370303", "370303001000", "370303001001"), "370303001000")


def test_a_valid_resident_id_gives_birth_date_and_gender() -> None:
    parsed = identity.parse_resident_id(resident_id("11010519491231002"), TODAY)
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.gender is Gender.female  # 17th digit even
    assert identity.parse_resident_id(resident_id("11010519491231001"), TODAY).gender is Gender.male


def test_the_published_example_id_number_is_valid() -> None:
    assert identity.parse_resident_id("11010519491231002X", TODAY).birth_date == date(1949, 12, 31)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("110105194912310021", "check character"),
        ("11010519491231002", "17 digits"),
        (resident_id("11010519490230002"), "does not exist"),
        (resident_id("11010520301231002"), "future"),
    ],
)
def test_a_bad_resident_id_is_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason) as refused:
        identity.parse_resident_id(value, TODAY)
    assert refused.value.field == "id_number"


@pytest.mark.parametrize(("born", "band"), [(date(2010, 1, 1), AgeBand.under_18), (date(2000, 1, 1), AgeBand.from_18_to_34), (date(1970, 1, 1), AgeBand.from_35_to_59), (date(1966, 11, 23), AgeBand.silver), (date(1966, 11, 24), AgeBand.from_35_to_59)])
def test_age_bands_count_whole_years(born: date, band: AgeBand) -> None:
    assert identity.age_band(born, TODAY) is band


def test_mobile_numbers_are_mainland_eleven_digit_numbers() -> None:
    assert identity.check_mobile("+8613812345678") == "13812345678"
    for bad in ("12812345678", "1381234567", "0531-1234567"):
        with pytest.raises(Invalid):
            identity.check_mobile(bad)


def test_a_community_lies_under_its_street_and_gets_the_path_from_the_district() -> None:
    event, unit = org.create_org_unit("370303001002", OrgLevel.community, "新华社区", 9000, 500, STREET)
    assert unit.path == ("370303", "370303001000", "370303001002")
    assert event.parent_code == "370303001000"
    with pytest.raises(Invalid, match="does not lie under"):
        org.create_org_unit("370303002001", OrgLevel.community, "x", 1, 0, STREET)
    with pytest.raises(Invalid, match="parent of a community is a street"):
        org.create_org_unit("370303001002", OrgLevel.community, "x", 1, 0, DISTRICT)
    with pytest.raises(Invalid, match="not a street division code"):
        org.create_org_unit("370303001", OrgLevel.street, "x", 1, 0, DISTRICT)
    with pytest.raises(Invalid, match="outnumber"):
        org.create_org_unit("370303001002", OrgLevel.community, "x", 1, 2, STREET)


def test_a_district_path_starts_at_the_district_and_a_city_has_no_parent() -> None:
    assert org.create_org_unit("370303", OrgLevel.district, "张店区", 1, 0, CITY)[1].path == ("370303",)
    assert org.create_org_unit("370300", OrgLevel.city, "淄博市", 1, 0, None)[1].path == ("370300",)
    with pytest.raises(Invalid, match="needs its city"):
        org.create_org_unit("370303", OrgLevel.district, "张店区", 1, 0, None)


def test_sites_stand_at_their_level_of_the_tree() -> None:
    assert org.open_site("s1", COMMUNITY, SiteLevel.station, SiteKind.community, "和平站", TODAY).org_unit_code == COMMUNITY.code
    with pytest.raises(Invalid, match="a station stands in a community"):
        org.open_site("s1", STREET, SiteLevel.station, SiteKind.community, "x", TODAY)


def test_registration_carries_no_personal_data_and_refuses_a_second_registration() -> None:
    resident = identity.parse_resident_id(resident_id("37030319850612002"), TODAY)
    event = volunteers.register("V00000001", resident, COMMUNITY, PoliticalStatus.party_member, [" First_Aid", "first_aid", ""], NOW, TODAY, None)
    assert event.model_dump() == {
        "volunteer_number": "V00000001",
        "community_code": "370303001001",
        "age_band": AgeBand.from_35_to_59,
        "gender": Gender.female,
        "political_status": PoliticalStatus.party_member,
        "skills": ["first_aid"],
        "tags": [],
        "consented_at": NOW,
    }
    with pytest.raises(Conflict, match="V00000007") as refused:
        volunteers.register("V00000002", resident, COMMUNITY, PoliticalStatus.masses, [], NOW, TODAY, "V00000007")
    assert refused.value.details == {"volunteer_number": "V00000007"}
    with pytest.raises(Invalid, match="consent"):
        volunteers.register("V00000002", resident, COMMUNITY, PoliticalStatus.masses, [], None, TODAY, None)
    with pytest.raises(Invalid, match="not a community"):
        volunteers.register("V00000002", resident, STREET, PoliticalStatus.masses, [], NOW, TODAY, None)


@pytest.mark.parametrize("tag", ["13812345678", "138 1234 5678", resident_id("37030319850612002"), "张三丰书法"])
def test_a_tag_holding_a_mobile_or_id_number_or_the_volunteers_name_is_refused(tag: str) -> None:
    resident = identity.parse_resident_id(resident_id("37030319850612002"), TODAY)
    with pytest.raises(Invalid, match="personal data") as refused:
        volunteers.register("V00000001", resident, COMMUNITY, PoliticalStatus.masses, [], NOW, TODAY, None, ["书法", tag], "张三丰")
    assert refused.value.field == "tags"
    kept = volunteers.register("V00000001", resident, COMMUNITY, PoliticalStatus.masses, [], NOW, TODAY, None, ["书法", "2024届"], "张三丰")
    assert kept.tags == ["2024届", "书法"]


def test_masking_keeps_only_what_identifies_nobody() -> None:
    assert identity.mask_id_number("11010519491231002X") == "110105********002X"
    assert identity.mask_phone("13812345678") == "138****5678"
