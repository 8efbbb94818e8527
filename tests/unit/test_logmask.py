"""Logs mask personal data: resident ID numbers and mobiles in a record's message, arguments and
traceback come out masked, whatever logger made the record; other numbers stay as they were."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field, ValidationError

from shared.logmask import PersonalDataMask, install_personal_data_mask, mask_personal_data
from tests.factories import resident_id

ID = resident_id("37030319850612002")
ID_MASKED = "3703**********" + ID[-4:]


def test_id_numbers_and_mobiles_are_masked_wherever_they_stand_in_a_text() -> None:
    assert mask_personal_data(f"GET /volunteers/{ID} HTTP/1.1") == f"GET /volunteers/{ID_MASKED} HTTP/1.1"
    assert (
        mask_personal_data(f"身份证号{ID.lower()}，电话13912340001。")
        == f"身份证号{ID_MASKED.lower()}，电话139****0001。"
    )
    assert mask_personal_data("phone=+86 139-1234-0001&x=1") == "phone=+86 139****0001&x=1"
    assert mask_personal_data("139 1234 0001") == "139****0001"
    # A mistyped ID number (wrong check character) is still someone's.
    assert mask_personal_data(ID[:17] + "0" if ID[17] != "0" else ID[:17] + "1").startswith("3703**********")


def test_other_numbers_are_left_as_they_are() -> None:
    kept = (
        "V00000001 370303001001 order O-20260115-0001 at 2026-01-15T08:00:00 took 1391234 ms; "
        "event 0190a8a1-1391-7234-8001-139123400012, hash " + "f" * 20 + "13912340001" + "e" * 20 + "; "
        "seq 12345678901 and 139123400012 and 18-digit 000000000000000001"
    )
    assert mask_personal_data(kept) == kept


def record(msg: object, *args: object, exc_info: object = None) -> logging.LogRecord:
    made = logging.LogRecord("beacon.test", logging.INFO, __file__, 1, msg, args or None, exc_info)
    PersonalDataMask().filter(made)
    return made


def test_text_arguments_are_masked_one_by_one_keeping_the_shape_uvicorn_formats_by() -> None:
    access = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/volunteers?id={ID}", "1.1", 404)
    assert access.args == ("127.0.0.1:5000", "GET", f"/volunteers?id={ID_MASKED}", "1.1", 404)
    assert access.getMessage() == f'127.0.0.1:5000 - "GET /volunteers?id={ID_MASKED} HTTP/1.1" 404'
    assert record(f"looked up {ID}").getMessage() == f"looked up {ID_MASKED}"
    assert record("%(phone)s called", {"phone": "13912340001"}).getMessage() == "139****0001 called"


def test_other_arguments_are_rendered_and_masked_as_a_whole() -> None:
    assert record("row %r", {"id_number": ID, "phone": "13912340001"}).getMessage() == (
        f"row {{'id_number': '{ID_MASKED}', 'phone': '139****0001'}}"
    )
    assert record("called %d", 13912340001).getMessage() == "called 139****0001"
    assert record(ValueError(f"bad {ID}")).getMessage() == f"bad {ID_MASKED}"


class _Person(BaseModel):
    id_number: str = Field(max_length=10)


def test_a_traceback_is_masked_too() -> None:
    # pydantic repeats the input in its message: an exception logged as it is would show it.
    try:
        _Person(id_number=ID)
    except ValidationError:
        failed = record("registration failed", exc_info=sys.exc_info())
    text = logging.Formatter().format(failed)
    assert ID not in text and ID_MASKED in text and "ValidationError" in text


@pytest.fixture
def masking() -> Iterator[None]:
    before = logging.getLogRecordFactory()
    install_personal_data_mask()
    install_personal_data_mask()  # twice: still one mask
    yield
    logging.setLogRecordFactory(before)


def test_once_installed_every_logger_in_the_process_masks(masking: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("beacon.test.lookups").info("lookup of %s", ID)
        logging.getLogger("some.library").warning(f"sms to 13912340001 about {ID}")
    assert caplog.messages == [f"lookup of {ID_MASKED}", f"sms to 139****0001 about {ID_MASKED}"]
    assert ID not in caplog.text and "13912340001" not in caplog.text
    factory = logging.getLogRecordFactory()
    assert getattr(factory, "masks_personal_data", False)
