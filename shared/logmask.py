"""Personal data kept out of the logs: resident ID numbers and mobile numbers in a log record's
message, arguments and traceback are masked (3703**********1234, 138****5678) before any handler
sees them, whichever logger made the record."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

# Any 18-character ID number with a birth date in it, checked or not: a mistyped one is still
# someone's. Letters and digits around it make it part of something else (a hash, a UUID).
_ID_NUMBER = re.compile(
    r"(?<![0-9A-Za-z])(\d{4})\d{2}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}([\dXx])(?![0-9A-Za-z])"
)
# A mainland mobile, also written +86 138-1234-5678 or 138 1234 5678.
_MOBILE = re.compile(r"(?<![0-9A-Za-z])((?:\+?86[- ]?)?1[3-9]\d)[- ]?\d{4}[- ]?(\d{4})(?![0-9A-Za-z])")
_PLAIN = (int, float, bool, type(None))


def _masked_id_number(match: re.Match[str]) -> str:
    return match.group(1) + "*" * 10 + match.group(0)[-4:]


def mask_personal_data(text: str) -> str:
    """`text` with every resident ID number and mobile number in it masked."""
    text = _ID_NUMBER.sub(_masked_id_number, text)
    return _MOBILE.sub(r"\1****\2", text)


def _mobile_like(value: int) -> bool:
    return 13_000_000_000 <= value < 20_000_000_000 or 8_613_000_000_000 <= value < 8_620_000_000_000


class PersonalDataMask(logging.Filter):
    """Masks a record in place and lets it through. Arguments that are text are masked one by one,
    keeping the record's shape for formatters that read `args` (uvicorn's access log); a record
    with any other kind of argument is rendered and masked as a whole."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._mask(record)
        except Exception:  # a record that cannot be rendered is the handler's to report, as before
            pass
        return True

    def _mask(self, record: logging.LogRecord) -> None:
        args: Any = record.args
        if args and (isinstance(args, Mapping) or _only_plain(args)):
            if isinstance(args, Mapping):
                record.args = {key: _masked_arg(value) for key, value in args.items()}
            else:
                record.args = tuple(_masked_arg(value) for value in args)
            if isinstance(record.msg, str):
                record.msg = mask_personal_data(record.msg)
        elif args or not isinstance(record.msg, str):
            record.msg, record.args = mask_personal_data(record.getMessage()), ()
        else:
            record.msg = mask_personal_data(record.msg)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            # The formatters use the text made here rather than render the exception again.
            record.exc_text = mask_personal_data(self._tracebacks.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask_personal_data(record.stack_info)


def _only_plain(args: tuple[Any, ...]) -> bool:
    return all(
        isinstance(a, str) or (isinstance(a, _PLAIN) and not (isinstance(a, int) and _mobile_like(a))) for a in args
    )


def _masked_arg(value: Any) -> Any:
    if isinstance(value, str):
        return mask_personal_data(value)
    if isinstance(value, _PLAIN):
        return value
    return mask_personal_data(str(value))


def install_personal_data_mask() -> None:
    """Mask every log record this process makes from now on. At the making of the record rather
    than on handlers, so that handlers configured later (uvicorn's own) are covered too. Once per
    process; calling it again changes nothing."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "masks_personal_data", False):
        return
    mask = PersonalDataMask()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        mask.filter(record)
        return record

    masked_record.masks_personal_data = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked_record)
