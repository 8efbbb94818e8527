"""The event catalog: every public event model, by name and schema version.

Events are a public contract. A service may publish and a consumer may accept only what is
registered here; anything else is refused with a reason that ends up in the dead-letter stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import msgspec
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.envelope import EnvelopeHeader, EventEnvelope, new_event_id, read_header, utcnow

_TOKEN = re.compile(r"^[a-z][a-z0-9_]*$")


class Event(BaseModel):
    """Base of every event payload: immutable, no unknown fields, no personal data."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    spec: ClassVar[EventSpec]


E = TypeVar("E", bound=type[Event])


@dataclass(frozen=True)
class EventSpec:
    name: str
    version: int
    context: str
    aggregate: str
    action: str
    model: type[Event]

    def subject(self, district_code: str) -> str:
        """`<service>.<district code>.<aggregate>.<event>`, all lower case."""
        return f"{self.context}.{district_code}.{self.aggregate}.{self.action}"


class EventRejected(Exception):
    """An event that no consumer may apply: the reason goes to the dead-letter stream."""

    def __init__(self, reason: str, envelope: EventEnvelope | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.envelope = envelope


class UnknownEventType(EventRejected):
    pass


class UnknownSchemaVersion(EventRejected):
    pass


class InvalidEvent(EventRejected):
    pass


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors())


class EventCatalog:
    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], EventSpec] = {}

    def register(self, *, context: str, aggregate: str, action: str, version: int = 1) -> Callable[[E], E]:
        for token in (context, aggregate, action):
            if not _TOKEN.match(token):
                raise ValueError(f"subject token {token!r} must be lower case letters, digits, _")

        def decorate(model: E) -> E:
            key = (model.__name__, version)
            if key in self._specs:
                raise ValueError(f"{model.__name__} v{version} is registered twice")
            if not (model.__doc__ or "").strip():
                raise ValueError(f"{model.__name__} needs a docstring: it is the partner-facing description")
            spec = EventSpec(model.__name__, version, context, aggregate, action, model)
            self._specs[key] = spec
            model.spec = spec
            return model

        return decorate

    def __iter__(self) -> Iterator[EventSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: (s.context, s.name, s.version)))

    def lookup(self, name: str, version: int) -> EventSpec:
        spec = self._specs.get((name, version))
        if spec is not None:
            return spec
        known = sorted(v for (n, v) in self._specs if n == name)
        if not known:
            raise UnknownEventType(f"unknown event type {name!r}")
        raise UnknownSchemaVersion(
            f"{name} schema version {version} is not known here (known: {', '.join(map(str, known))})"
        )

    def knows(self, name: str) -> bool:
        return any(n == name for (n, _) in self._specs)

    def envelope(
        self,
        event: Event,
        *,
        aggregate_id: str,
        aggregate_version: int,
        org_path: tuple[str, ...],
        actor: str,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> EventEnvelope:
        spec = type(event).spec
        event_id = new_event_id()
        now = utcnow()
        return EventEnvelope(
            event_id=event_id,
            type=spec.name,
            schema_version=spec.version,
            occurred_at=occurred_at or now,
            recorded_at=now,
            aggregate_type=spec.aggregate,
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            org_path=org_path,
            correlation_id=correlation_id or event_id,
            causation_id=causation_id,
            actor=actor,
            payload=event.model_dump(mode="json"),
        )

    def subject_of(self, envelope: EventEnvelope) -> str:
        return self.lookup(envelope.type, envelope.schema_version).subject(envelope.district_code)

    def parse_envelope(self, raw: bytes | str | dict[str, Any]) -> EventEnvelope:
        try:
            if isinstance(raw, dict):
                return EventEnvelope.model_validate(raw)
            return EventEnvelope.model_validate_json(raw)
        except ValidationError as error:
            raise InvalidEvent(f"malformed envelope: {_describe(error)}") from None

    def payload_of(self, envelope: EventEnvelope) -> Event:
        spec = self.lookup(envelope.type, envelope.schema_version)
        try:
            return spec.model.model_validate(envelope.payload)
        except ValidationError as error:
            raise InvalidEvent(f"invalid {spec.name} v{spec.version} payload: {_describe(error)}", envelope) from None

    def parse_header(self, raw: bytes) -> EnvelopeHeader:
        """The light read of an envelope, for projections (see `EnvelopeHeader`)."""
        try:
            return read_header(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise InvalidEvent(f"malformed envelope: {error}") from None

    def payload_under(self, header: EnvelopeHeader) -> Event:
        """The validated payload of a header read by `parse_header`."""
        spec = self.lookup(header.type, header.schema_version)
        try:
            return spec.model.model_validate_json(bytes(header.payload))
        except ValidationError as error:
            raise InvalidEvent(f"invalid {spec.name} v{spec.version} payload: {_describe(error)}") from None

    def parse(self, raw: bytes | str) -> tuple[EventEnvelope, Event]:
        envelope = self.parse_envelope(raw)
        try:
            return envelope, self.payload_of(envelope)
        except EventRejected as error:
            error.envelope = envelope
            raise

    def json_schemas(self) -> dict[str, Any]:
        """JSON Schema of every registered payload, keyed `Name.vN`, for partners."""
        return {f"{s.name}.v{s.version}": s.model.model_json_schema() for s in self}


catalog = EventCatalog()
