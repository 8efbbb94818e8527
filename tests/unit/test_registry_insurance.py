"""Registry's pure rule for insurance records: codes and dates only, once each, never for a
volunteer who left."""

from __future__ import annotations

from datetime import date

import pytest

from services.registry.domain import volunteers
from services.registry.domain.volunteers import Insurance, Volunteer
from shared.errors import Conflict, Invalid
from shared.events.common import PoliticalStatus, VolunteerStatus
from shared.events.registry import VolunteerInsured

FROM, UNTIL = date(2026, 1, 1), date(2026, 12, 31)


def volunteer(status: VolunteerStatus = VolunteerStatus.verified) -> Volunteer:
    path = ("370303", "370303001000", "370303001001")
    return Volunteer("V00000001", status, path[-1], path, PoliticalStatus.masses, ("first_aid",), version=2)


def test_an_insurance_is_recorded_as_codes_and_the_days_it_covers() -> None:
    events = volunteers.record_insurance(volunteer(), " PICC ", "accident", FROM, UNTIL)
    assert events == [
        VolunteerInsured(volunteer_number="V00000001", insurer="picc", cover="accident", valid_from=FROM, valid_until=UNTIL)
    ]
    for personal in ("policy_number", "name", "id_number", "phone"):
        assert personal not in VolunteerInsured.model_fields
    insured = volunteers.evolve(volunteer(), ("370303",), events[0])
    assert insured.insurance == (Insurance("picc", "accident", FROM, UNTIL),) and insured.version == 3


def test_recording_the_same_insurance_again_changes_nothing_and_a_renewal_is_kept_beside_it() -> None:
    [event] = volunteers.record_insurance(volunteer(), "picc", "accident", FROM, UNTIL)
    insured = volunteers.evolve(volunteer(), ("370303",), event)
    assert volunteers.record_insurance(insured, "picc", "accident", FROM, UNTIL) == []
    [renewal] = volunteers.record_insurance(insured, "picc", "accident", date(2027, 1, 1), date(2027, 12, 31))
    assert volunteers.evolve(insured, ("370303",), renewal).insurance[-1].valid_from == date(2027, 1, 1)


def test_an_insurance_ends_on_or_after_the_day_it_starts() -> None:
    assert volunteers.record_insurance(volunteer(), "picc", "accident", FROM, FROM)  # one day
    with pytest.raises(Invalid) as refused:
        volunteers.record_insurance(volunteer(), "picc", "accident", UNTIL, FROM)
    assert refused.value.field == "valid_until"


@pytest.mark.parametrize(("insurer", "cover", "field"), [("人保", "accident", "insurer"), ("picc", "PN-2026-0001", "cover"), ("1picc", "accident", "insurer")])
def test_insurer_and_cover_are_codes_not_free_text(insurer: str, cover: str, field: str) -> None:
    with pytest.raises(Invalid) as refused:
        volunteers.record_insurance(volunteer(), insurer, cover, FROM, UNTIL)
    assert refused.value.field == field


def test_a_deregistered_volunteer_is_not_insured() -> None:
    with pytest.raises(Conflict) as refused:
        volunteers.record_insurance(volunteer(VolunteerStatus.deregistered), "picc", "accident", FROM, UNTIL)
    assert refused.value.details["state"] == "deregistered"
