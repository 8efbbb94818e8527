"""The event catalog: every public event model, by name and schema version.

Events are a public contract. A service may publish and a consumer may accept only what is
registered here; anything else is refused with a reason that ends up in the dead-letter stream.

An event changes incompatibly only by a new version: the old model stays registered (the
streams keep its messages forever) together with an upcaster to the next version, so that every
reader gets the current model whichever version a message holds, and producers publish only the
current one. A new version keeps its subject, so filter subjects keep working.
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

from shared.envelope import (
    EnvelopeHeader,
    EventEnvelope,
    FollowedEnvelope,
    new_event_id,
    read_followed,
    read_header,
    utcnow,
)
from shared.logs import current_correlation_id

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


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventCatalog:
    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], EventSpec] = {}
        self._latest: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        # By (name, version): the spec, its model's JSON validator, whether it is the current
        # version (`payload_under` reads millions of payloads in a rebuild, a lookup each).
        self._readers: dict[tuple[str, int], tuple[EventSpec, Callable[[bytes], Any], bool]] = {}

    def register(
        self, *, context: str, aggregate: str, action: str, version: int = 1, name: str | None = None
    ) -> Callable[[E], E]:
        """Register an event model. `name` defaults to the class name; a superseded version's
        class (e.g. `StarLevelAwardedV1`) gives the event's name here."""
        for token in (context, aggregate, action):
            if not _TOKEN.match(token):
                raise ValueError(f"subject token {token!r} must be lower case letters, digits, _")

        def decorate(model: E) -> E:
            event = name or model.__name__
            key = (event, version)
            if key in self._specs:
                raise ValueError(f"{event} v{version} is registered twice")
            if not (model.__doc__ or "").strip():
                raise ValueError(f"{event} needs a docstring: it is the partner-facing description")
            other = next((s for (n, _), s in self._specs.items() if n == event), None)
            if other is not None and (other.context, other.aggregate, other.action) != (context, aggregate, action):
                raise ValueError(f"{event} v{version} must keep the subject of v{other.version}: partners filter by it")
            spec = EventSpec(event, version, context, aggregate, action, model)
            self._specs[key] = spec
            self._latest[event] = max(version, self._latest.get(event, 0))
            self._readers.clear()
            model.spec = spec
            return model

        return decorate

    def upcaster(self, older: type[Event], newer: type[Event]) -> Callable[[Upcaster], Upcaster]:
        """Register how a payload of `older` becomes one of `newer`, the next version of the same
        event: a function of the older payload's JSON form, giving the newer one's."""
        if older.spec.name != newer.spec.name or newer.spec.version != older.spec.version + 1:
            raise ValueError(
                f"an upcaster goes from one version of an event to the next, not {older.spec} to {newer.spec}"
            )

        def decorate(upcast: Upcaster) -> Upcaster:
            key = (older.spec.name, older.spec.version)
            if key in self._upcasters:
                raise ValueError(f"{older.spec.name} v{older.spec.version} has an upcaster already")
            self._upcasters[key] = upcast
            return upcast

        return decorate

    def latest(self, name: str) -> EventSpec:
        """The current version of an event: the one producers publish and readers are given."""
        return self.lookup(name, self._latest.get(name, 0))

    def superseded(self, spec: EventSpec) -> bool:
        return self._latest[spec.name] != spec.version

    def missing_upcasters(self) -> list[str]:
        """Superseded versions that could not be read as the current one (a test keeps it empty)."""
        return [
            f"{s.name} v{s.version}" for s in self if self.superseded(s) and (s.name, s.version) not in self._upcasters
        ]

    def _to_current(self, spec: EventSpec, event: Event) -> Event:
        payload = event.model_dump(mode="json")
        for version in range(spec.version, self._latest[spec.name]):
            upcast = self._upcasters.get((spec.name, version))
            if upcast is None:
                raise UnknownSchemaVersion(f"{spec.name} v{version} has no upcaster to v{version + 1}")
            payload = upcast(payload)
        current = self.latest(spec.name)
        try:
            return current.model.model_validate(payload)
        except ValidationError as error:
            raise InvalidEvent(f"{spec.name} v{spec.version} read as v{current.version}: {_describe(error)}") from None

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
        if self.superseded(spec):
            raise ValueError(f"{spec.name} v{spec.version} is superseded: publish v{self._latest[spec.name]}")
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
            # The request's or message's being handled (shared.logs), else a new one: this event's.
            correlation_id=correlation_id or current_correlation_id() or event_id,
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
        """The payload as the current version of its event (upcast from an older one)."""
        spec = self.lookup(envelope.type, envelope.schema_version)
        try:
            event = spec.model.model_validate(envelope.payload)
        except ValidationError as error:
            raise InvalidEvent(f"invalid {spec.name} v{spec.version} payload: {_describe(error)}", envelope) from None
        return event if self._latest[spec.name] == spec.version else self._to_current(spec, event)

    def parse_header(self, raw: bytes) -> EnvelopeHeader:
        """The light read of an envelope, for projections (see `EnvelopeHeader`)."""
        try:
            return read_header(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise InvalidEvent(f"malformed envelope: {error}") from None

    def parse_followed(self, raw: bytes) -> FollowedEnvelope:
        """The whole envelope as a stream follower reads it (see `FollowedEnvelope`)."""
        try:
            return read_followed(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            raise InvalidEvent(f"malformed envelope: {error}") from None

    def payload_under(self, header: EnvelopeHeader | FollowedEnvelope) -> Event:
        """The validated payload of a header read by `parse_header`, as the current version."""
        reader = self._readers.get((header.type, header.schema_version))
        if reader is None:
            spec = self.lookup(header.type, header.schema_version)
            reader = self._readers[spec.name, spec.version] = (
                spec,
                spec.model.__pydantic_validator__.validate_json,
                self._latest[spec.name] == spec.version,
            )
        spec, validate_json, current = reader
        try:
            event = validate_json(bytes(header.payload))
        except ValidationError as error:
            raise InvalidEvent(f"invalid {spec.name} v{spec.version} payload: {_describe(error)}") from None
        return event if current else self._to_current(spec, event)

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
