"""The event catalog for partners: an AsyncAPI 3.0 document per service and a JSON Schema per event
version, generated from the catalog (shared/catalog.py) and from what each service reads.

Every service serves its own document at `GET /asyncapi` (`?format=yaml`, or `/asyncapi.yaml`);
the same documents are committed under docs/events/, and a test fails when they drift from the
code. Regenerate them with:

    .venv/bin/python -m shared.asyncapi --write docs/events
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from shared.bus import (
    CONSUMER,
    DEAD_LETTER_STREAM,
    DELIVERIES,
    ORIGINAL_SEQUENCE,
    ORIGINAL_STREAM,
    ORIGINAL_SUBJECT,
    REASON,
    stream_name,
)
from shared.catalog import EventCatalog, EventSpec
from shared.catalog import catalog as default_catalog
from shared.envelope import EventEnvelope
from shared.web import ANYONE, allow

ASYNCAPI_VERSION = "3.0.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SERVICES = ("registry", "dispatch", "points", "reporting")
SCHEMAS_FOLDER = "schemas"
DISTRICT = "{district}"


@dataclass(frozen=True)
class Reader:
    """One way a service reads a context's stream: a durable consumer (`shared/subscriber.py`) or
    an ordered reader (`shared/replay.py`), its filter subject, and which events it applies."""

    name: str
    context: str
    subject: str
    handles: Callable[[str], bool]
    durable: bool

    def reads(self, spec: EventSpec) -> bool:
        return spec.context == self.context and self.handles(spec.name) and _matches(self.subject, spec)


class ReadingService(Protocol):
    name: str
    readers: list[Reader]


def _matches(filter_subject: str, spec: EventSpec) -> bool:
    """Whether a NATS filter subject takes the event's subject in some district."""
    tokens = spec.subject(DISTRICT).split(".")
    wanted = filter_subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(wanted)


def _doc(spec: EventSpec) -> str:
    return inspect.cleandoc(spec.model.__doc__ or "")


def _summary(text: str) -> str:
    first = " ".join(text.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".") + "."


def message_id(spec: EventSpec) -> str:
    return f"{spec.name}.v{spec.version}"


def schema_file(spec: EventSpec) -> str:
    return f"{SCHEMAS_FOLDER}/{message_id(spec)}.json"


def _hoist(schema: dict[str, Any], into: dict[str, Any], where: str) -> dict[str, Any]:
    """Move a schema's `$defs` into `into`; a name defined twice must mean the same thing."""
    for name, definition in schema.pop("$defs", {}).items():
        if into.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are named {name} ({where})")
    return schema


# --- JSON Schema per event version ---------------------------------------------------------------


def message_schema(spec: EventSpec, catalog: EventCatalog = default_catalog) -> dict[str, Any]:
    """The JSON Schema of a whole message of one event version: the envelope, with its `type`,
    `schema_version` and `payload` pinned to this event's."""
    defs: dict[str, Any] = {}
    envelope = _hoist(EventEnvelope.model_json_schema(), defs, "envelope")
    defs["payload"] = _hoist(spec.model.model_json_schema(), defs, spec.name)
    properties = dict(envelope["properties"])
    properties["type"] = {**properties["type"], "const": spec.name}
    properties["schema_version"] = {**properties["schema_version"], "const": spec.version}
    properties["payload"] = {"$ref": "#/$defs/payload"}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{spec.name} v{spec.version}",
        "description": _doc(spec),
        "type": "object",
        "properties": properties,
        "required": envelope["required"],
        "additionalProperties": False,
        "x-beacon-subject": spec.subject(DISTRICT),
        "x-beacon-publisher": spec.context,
        "x-beacon-status": "superseded" if catalog.superseded(spec) else "current",
        "$defs": dict(sorted(defs.items())),
    }


# --- AsyncAPI ------------------------------------------------------------------------------------

_REF = "#/components/schemas/{model}"

_INFO = """\
What Beacon's {service} service publishes and consumes on NATS JetStream. Generated from the code
(shared/asyncapi.py); partners start with docs/partners.md.

Every message is one JSON envelope (components.schemas.Envelope): a UUIDv7 `event_id` (also the
`Nats-Msg-Id` header: deduplicate by it), the event `type` and its `schema_version`, `occurred_at`
and `recorded_at` in UTC, the aggregate's type, id and version, the `org_path` (division codes,
district first), correlation and causation ids, the `actor`, and the `payload`, whose schema each
message gives. Subjects are `<context>.<district>.<aggregate>.<event>`: follow one district with
the filter subject `<context>.<district>.>`. Delivery is at least once; order is kept per
subject. A message of an older version stays in the stream for good: read it as documented under
its version, or as the current version (every superseded version says how it maps)."""


def _district_parameter() -> dict[str, Any]:
    return {
        "description": (
            "The first division code of the envelope's org_path: the district (6 digits, e.g. 370303), "
            "the city's own code for facts about the city itself, or 0 for points' city-wide rules."
        ),
        "examples": ["370303", "370305"],
    }


def _nats_msg_id_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "format": "uuid",
                "description": "The envelope's event_id: JetStream drops a second copy within its duplicate "
                "window (one hour); a consumer deduplicates by it beyond that.",
            }
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    described = {
        "Nats-Msg-Id": "<consumer>:<stream>:<stream sequence>: the same message parked twice is kept once.",
        REASON: "Why the consumer will not apply it (an unknown type or version, an invalid payload, or the "
        "last error after its retries).",
        CONSUMER: "The consumer that parked it.",
        ORIGINAL_STREAM: "The stream it came from.",
        ORIGINAL_SEQUENCE: "Its sequence in that stream.",
        ORIGINAL_SUBJECT: "Its subject.",
        DELIVERIES: "How many times it was delivered.",
    }
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in described.items()},
        "required": list(described),
    }


class _Builder:
    def __init__(self, catalog: EventCatalog) -> None:
        self.catalog = catalog
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}

    def schema(self, key: str, model: Any) -> None:
        if key not in self.schemas:
            self.schemas[key] = _hoist(model.model_json_schema(ref_template=_REF), self.schemas, key)

    def channel(self, name: str) -> dict[str, Any]:
        """The channel of an event (all its versions), with a message per version."""
        versions = [s for s in self.catalog if s.name == name]
        current = self.catalog.latest(name)
        if name not in self.channels:
            self.channels[name] = {
                "address": current.subject(DISTRICT),
                "title": name,
                "summary": _summary(_doc(current)),
                "description": f"{name} events of every district, in stream {stream_name(current.context)}.",
                "parameters": {"district": {"$ref": "#/components/parameters/district"}},
                "messages": {message_id(s): {"$ref": f"#/components/messages/{message_id(s)}"} for s in versions},
            }
            for spec in versions:
                self.message(spec)
        return self.channels[name]

    def message(self, spec: EventSpec) -> None:
        key = message_id(spec)
        self.schema("Envelope", EventEnvelope)
        self.schema(key, spec.model)
        superseded = self.catalog.superseded(spec)
        text = _doc(spec)
        self.messages[key] = {
            "name": spec.name,
            "title": f"{spec.name} v{spec.version}" + (" (superseded)" if superseded else ""),
            "summary": _summary(text),
            "description": text,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/NatsHeaders"},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": spec.name},
                            "schema_version": {"const": spec.version},
                            "payload": {"$ref": f"#/components/schemas/{key}"},
                        },
                    },
                ]
            },
            "correlationId": {"$ref": "#/components/correlationIds/correlation"},
            "x-beacon-schema-version": spec.version,
            "x-beacon-status": "superseded" if superseded else "current",
            "x-beacon-schema-file": schema_file(spec),
        }


def asyncapi_document(
    service: str, readers: Sequence[Reader], catalog: EventCatalog = default_catalog
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of one service: the events it publishes (its own context's), the
    events each of its readers applies, and where it parks what it will not apply."""
    build = _Builder(catalog)
    operations: dict[str, Any] = {}
    for spec in catalog:
        if spec.context != service or catalog.superseded(spec):
            continue
        build.channel(spec.name)
        operations[f"publish{spec.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{spec.name}"},
            "title": f"{service} publishes {spec.name}",
            "summary": f"Published as v{spec.version}; older versions stay in the stream.",
            "description": f"From {service}'s outbox once the change is committed, with Nats-Msg-Id = event_id, "
            f"into stream {stream_name(service)}.",
            "messages": [{"$ref": f"#/channels/{spec.name}/messages/{message_id(spec)}"}],
        }
    for reader in readers:
        for spec in catalog:
            if catalog.superseded(spec) or not reader.reads(spec):
                continue
            channel = build.channel(spec.name)
            kind = "a durable consumer" if reader.durable else "an ordered reader from its own checkpoint"
            operations[f"{reader.name}.{spec.name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{spec.name}"},
                "title": f"{reader.name} applies {spec.name}",
                "description": f"{service} applies it through {kind} ({reader.name}) on stream "
                f"{stream_name(reader.context)}, filter subject {reader.subject}; every version is read "
                "as the current one. What it will not apply goes to the dead-letter channel.",
                "messages": [{"$ref": f"#/channels/{spec.name}/messages/{m}"} for m in channel["messages"]],
                "x-beacon-consumer": reader.name,
                "x-beacon-filter-subject": reader.subject,
            }
    components: dict[str, Any] = {
        "schemas": {},
        "messages": build.messages,
        "parameters": {"district": _district_parameter()},
        "correlationIds": {
            "correlation": {
                "description": "The request that set the chain of events off; causation_id names the event "
                "that caused this one.",
                "location": "$message.payload#/correlation_id",
            }
        },
    }
    if readers:
        names = sorted({r.name for r in readers})
        build.channels["DeadLetter"] = {
            "address": "deadletter.{consumer}.{subject}",
            "title": "Dead letters",
            "description": f"What {service}'s consumers will not apply, copied into stream {DEAD_LETTER_STREAM} "
            "with the reason while the stream goes on.",
            "parameters": {
                "consumer": {"description": "The consumer that parked the message.", "enum": names},
                "subject": {"description": "The original subject (several tokens)."},
            },
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        }
        build.messages["DeadLetter"] = {
            "name": "DeadLetter",
            "title": "A message parked with the reason",
            "summary": "The original message body as it came, unchanged, with why it was parked.",
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
            "payload": {"description": "The original body as it came (usually an envelope; perhaps not JSON)."},
        }
        components["schemas"]["DeadLetterHeaders"] = _dead_letter_headers()
        operations["deadLetter"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/DeadLetter"},
            "title": f"{service} parks what it will not apply",
            "messages": [{"$ref": "#/channels/DeadLetter/messages/DeadLetter"}],
        }
    components["schemas"].update({"NatsHeaders": _nats_msg_id_headers(), **build.schemas})
    components["schemas"] = dict(sorted(components["schemas"].items()))
    components["messages"] = dict(sorted(build.messages.items()))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": f"urn:beacon:{service}:events",
        "info": {
            "title": f"Beacon {service} events",
            "version": _version(),
            "description": _INFO.format(service=service),
        },
        "defaultContentType": "application/json",
        "servers": {
            "beacon": {
                "host": "{host}",
                "protocol": "nats",
                "description": "The city's NATS (JetStream); partners connect with their own user (docs/partners.md).",
                "variables": {"host": {"default": "localhost:4222", "description": "host:port of a NATS server."}},
            }
        },
        "channels": dict(sorted(build.channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": components,
    }


def _version() -> str:
    try:
        return metadata.version("beacon")
    except metadata.PackageNotFoundError:  # a checkout not installed: the documents say so
        return "0.0.0+unknown"


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def asyncapi_router(service: ReadingService) -> APIRouter:
    """`GET /asyncapi` and `/asyncapi.yaml`: the service's own document, public."""
    router = APIRouter(tags=["ops"])
    cached: dict[str, dict[str, Any]] = {}

    def document() -> dict[str, Any]:
        if "doc" not in cached:  # the readers are all wired by the first request
            cached["doc"] = asyncapi_document(service.name, service.readers)
        return cached["doc"]

    document_in = {"content": {"application/json": {"schema": {"type": "object"}}, "application/yaml": {"schema": {"type": "object"}}}}
    yaml_only = {"content": {"application/yaml": {"schema": {"type": "object"}}}}

    @router.get("/asyncapi", **allow(ANYONE), responses={200: {"description": "The AsyncAPI document", **document_in}})
    async def asyncapi(format: Literal["json", "yaml"] = "json") -> Response:
        """This service's events as an AsyncAPI 3.0 document: what it publishes and consumes, on
        which subjects, with each event version's payload schema (YAML with `?format=yaml`)."""
        if format == "yaml":
            return Response(to_yaml(document()), media_type="application/yaml")
        return JSONResponse(document())

    @router.get("/asyncapi.yaml", **allow(ANYONE), responses={200: {"description": "The AsyncAPI document", **yaml_only}})
    async def asyncapi_yaml() -> Response:
        """The same document as `/asyncapi`, in YAML."""
        return Response(to_yaml(document()), media_type="application/yaml")

    return router


# --- The committed documents ---------------------------------------------------------------------


def service_app(name: str, folder: Path) -> Any:
    """A service's app as it wires itself, its store in `folder` (never opened; nothing connects
    until the app is started)."""
    from shared.settings import ServiceSettings

    app_module = importlib.import_module(f"services.{name}.app")  # the wiring is each app's own
    kind = {"registry": "RegistrySettings", "dispatch": "DispatchSettings"}.get(name)
    settings_class = getattr(app_module, kind) if kind else ServiceSettings
    settings = settings_class(database_url=f"sqlite:///{folder / name}.db", nats_url="nats://127.0.0.1:1")
    return app_module.create_app(settings)


def service_readers(folder: Path) -> dict[str, list[Reader]]:
    """Each service's readers, from its app."""
    return {name: list(service_app(name, folder).state.runtime.readers) for name in SERVICES}


def documents(readers: dict[str, list[Reader]], catalog: EventCatalog = default_catalog) -> dict[str, str]:
    """Every committed file by its path under docs/events/: a document per service (JSON and
    YAML), a JSON Schema per event version, and the index."""
    files = {}
    for service, its_readers in readers.items():
        document = asyncapi_document(service, its_readers, catalog)
        files[f"{service}.asyncapi.json"] = to_json(document)
        files[f"{service}.asyncapi.yaml"] = to_yaml(document)
    for spec in catalog:
        files[schema_file(spec)] = to_json(message_schema(spec, catalog))
    files["README.md"] = index(readers, catalog)
    return files


def index(readers: dict[str, list[Reader]], catalog: EventCatalog = default_catalog) -> str:
    lines = [
        "# Beacon's events",
        "",
        "Generated by `.venv/bin/python -m shared.asyncapi --write docs/events`; do not edit by hand (a test",
        "compares it with the code). How to follow them: [../partners.md](../partners.md).",
        "",
        "Each service's AsyncAPI 3.0 document is `<service>.asyncapi.json` (and `.yaml`), also served at",
        "`GET /asyncapi` by the service itself. Each event version's JSON Schema (the whole message: the",
        "envelope with its payload) is in `schemas/<Event>.v<N>.json`.",
        "",
        "| Event | Versions | Subject | Published by | Consumed by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in sorted({s.name for s in catalog}, key=lambda n: (catalog.latest(n).context, n)):
        current = catalog.latest(name)
        versions = ", ".join(
            f"[v{s.version}]({schema_file(s)})" + (" (superseded)" if catalog.superseded(s) else "")
            for s in catalog
            if s.name == name
        )
        consumers = sorted(f"{service} (`{r.name}`)" for service, rs in readers.items() for r in rs if r.reads(current))
        lines.append(
            f"| {name} | {versions} | `{current.subject(DISTRICT)}` | {current.context} | {', '.join(consumers) or '—'} |"
        )
    lines += [
        "",
        (
            f"Dead letters: `deadletter.<consumer>.<original subject>` in stream `{DEAD_LETTER_STREAM}`, the "
            f"original body with the headers `{REASON}`, `{CONSUMER}`, `{ORIGINAL_STREAM}`, `{ORIGINAL_SEQUENCE}`, "
            f"`{ORIGINAL_SUBJECT}` and `{DELIVERIES}`."
        ),
        "",
    ]
    return "\n".join(lines)


def write(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write the files, and remove schema files of event versions that no longer exist."""
    written = []
    (folder / SCHEMAS_FOLDER).mkdir(parents=True, exist_ok=True)
    for stale in (folder / SCHEMAS_FOLDER).glob("*.json"):
        if f"{SCHEMAS_FOLDER}/{stale.name}" not in files:
            stale.unlink()
    for relative, text in files.items():
        path = folder / relative
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def differences(folder: Path, files: dict[str, str]) -> list[str]:
    """The committed files that differ from `files`, are missing, or are left over."""
    wrong = [
        name
        for name, text in files.items()
        if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text
    ]
    extra = [
        f"{SCHEMAS_FOLDER}/{p.name}"
        for p in (folder / SCHEMAS_FOLDER).glob("*.json")
        if f"{SCHEMAS_FOLDER}/{p.name}" not in files
    ]
    return sorted(wrong + extra)


def generated() -> dict[str, str]:
    import shared.events  # noqa: F401  (registers the catalog)

    with tempfile.TemporaryDirectory(prefix="beacon-asyncapi-") as folder:
        return documents(service_readers(Path(folder)))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.asyncapi", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="DIR", help="write the documents into DIR (docs/events)")
    group.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's documents differ from the code")
    args = parser.parse_args(list(argv) if argv is not None else None)
    files = generated()
    if args.write:
        for path in write(args.write, files):
            print(path)
        return 0
    stale = differences(args.check, files)
    for name in stale:
        print(f"out of date: {args.check / name}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
