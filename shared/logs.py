"""Logs: one JSON object per line (or human text), each with the correlation id of the request or
message being handled, which a contextvar carries from the HTTP middleware and the subscriber."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from shared.logmask import install_personal_data_mask, mask_personal_data

CORRELATION_HEADER = "X-Correlation-Id"

# What is being handled now: set for a request by shared.web, for a message by shared.subscriber.
_correlation: ContextVar[UUID | None] = ContextVar("beacon_correlation_id", default=None)


def current_correlation_id() -> UUID | None:
    """The correlation id of the request or message being handled, if any: the events it causes
    carry it (shared.catalog)."""
    return _correlation.get()


@contextmanager
def correlated(correlation_id: UUID | None) -> Iterator[None]:
    """Log lines and events made inside carry `correlation_id`."""
    token = _correlation.set(correlation_id)
    try:
        yield
    finally:
        _correlation.reset(token)


def correlation_from(value: str | None) -> UUID | None:
    """A caller's correlation id if it is a UUID (what an envelope carries), else None."""
    if not value:
        return None
    try:
        return UUID(value.strip())
    except ValueError:
        return None


class BeaconJsonFormatter(JsonFormatter):
    """time, level, logger, service, message, correlation_id, trace_id where there is one, and the
    exception. Only these: a record's extra attributes (uvicorn's `color_message`, say) are not
    masked by shared.logmask, so they stay out."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["service"] = self.service
        log_data["message"] = record.message
        correlation_id = _correlation.get()
        log_data["correlation_id"] = str(correlation_id) if correlation_id is not None else None
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            log_data["trace_id"] = format(span.trace_id, "032x")
        for name in ("exc_info", "stack_info"):
            if message_dict.get(name):
                log_data[name] = message_dict[name]

    def formatException(self, ei: Any) -> str:
        # shared.logmask masked the record's own rendering (exc_text), which this one bypasses.
        return mask_personal_data(str(super().formatException(ei)))


class _TextWithCorrelation(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        correlation_id = _correlation.get()
        record.correlation = f" [{correlation_id}]" if correlation_id is not None else ""
        return super().format(record)


def log_formatter(service: str, log_format: str) -> logging.Formatter:
    if log_format == "json":
        return BeaconJsonFormatter(service)
    if log_format == "text":
        return _TextWithCorrelation(f"%(asctime)s {service} %(levelname)s %(name)s%(correlation)s: %(message)s")
    raise ValueError(f"log format is json or text, not {log_format!r}")


def configure_logging(service: str, log_format: str = "json", level: str = "INFO") -> None:
    """Every record of the process (uvicorn's too: run it with `log_config=None`) to stderr, one
    line each in `log_format`, personal data masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(service, log_format))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    install_personal_data_mask()
