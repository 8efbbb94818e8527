"""Log lines: one JSON object each, with the correlation id of what is being handled, and no
personal data in clear in any part of it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from uuid import uuid4

import pytest

from shared.logmask import install_personal_data_mask
from shared.logs import correlated, correlation_from, log_formatter
from tests.factories import resident_id

ID = resident_id("37030319900101123")
ID_MASKED = "3703**********" + ID[-4:]


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    install_personal_data_mask()
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(log_formatter("points", "json"))
    logger = logging.getLogger(f"test.logs.{uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lines, handler
    logger.removeHandler(handler)


def records(lines: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_the_correlation_id_of_what_is_being_handled(written) -> None:
    logger, lines, _ = written
    correlation_id = uuid4()
    logger.info("before")
    with correlated(correlation_id):
        logger.warning("applied %d events\nof which %s", 3, "none failed")
    logger.info("after")

    before, during, after = records(lines)
    assert during["level"] == "WARNING" and during["logger"] == logger.name and during["service"] == "points"
    assert during["message"] == "applied 3 events\nof which none failed"
    assert during["correlation_id"] == str(correlation_id)
    assert before["correlation_id"] is None and after["correlation_id"] is None
    assert str(during["time"]).endswith("+00:00")


def test_personal_data_is_masked_in_the_message_and_the_traceback_and_extras_stay_out(written) -> None:
    logger, lines, _ = written
    try:
        raise RuntimeError(f"could not register {ID}")
    except RuntimeError:
        logger.exception("registering %s failed", ID, extra={"color_message": f"registering {ID} failed"})

    (record,) = records(lines)
    assert record["message"] == f"registering {ID_MASKED} failed"
    assert f"RuntimeError: could not register {ID_MASKED}" in str(record["exc_info"])
    assert "color_message" not in record
    assert ID not in lines.getvalue()


def test_the_text_format_shows_the_correlation_id_too(written) -> None:
    logger, lines, handler = written
    handler.setFormatter(log_formatter("points", "text"))
    correlation_id = uuid4()
    with correlated(correlation_id):
        logger.info("hello")
    assert f"points INFO {logger.name} [{correlation_id}]: hello" in lines.getvalue()


def test_a_correlation_id_is_taken_from_a_caller_only_if_it_is_a_uuid() -> None:
    given = uuid4()
    assert correlation_from(str(given)) == given
    assert correlation_from("not-a-uuid") is None and correlation_from("") is None and correlation_from(None) is None


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json or text"):
        log_formatter("points", "yaml")
