"""A partner's follower of Beacon's star awards in one district: prints each StarLevelAwarded.

Standalone: it needs nats-py and Beacon's published JSON Schemas (docs/events/schemas/), nothing
of Beacon's code. It reads through a durable JetStream consumer whose filter subject is the
district's star-award subject, so the server keeps its cursor: stopped and started again, it goes
on after the last award it acknowledged. Delivery is at least once, so it also remembers the
event ids it has handled (`--seen`) and skips a second copy.

    python examples/partner_stars/follow_stars.py --district 370303 \\
        --nats-url nats://localhost:4222 --schemas docs/events/schemas [--nkey-seed partner.nk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

EVENT = "StarLevelAwarded"
STREAM = "POINTS"
SUBJECT = "points.{district}.account.star_level_awarded"

_TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}  # fmt: skip


def problems(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> list[str]:
    """What in `value` breaks `schema`: a small JSON Schema check (references within the file,
    type, const, enum, required, properties, items, anyOf, bounds, pattern). Fields the schema
    does not name are let through: Beacon may add optional ones within a version."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return problems(value, target, root, where)
    if "anyOf" in schema:
        options = [problems(value, option, root, where) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else [f"{where}: matches none of its forms"]
    kind = schema.get("type")
    if kind and (not isinstance(value, _TYPES[kind]) or (kind in ("integer", "number") and isinstance(value, bool))):
        return [f"{where}: not of type {kind}"]
    found = []
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: not one of {schema['enum']}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and (value < schema.get("minimum", value) or value > schema.get("maximum", value)):
        found.append(f"{where}: out of range")
    text = isinstance(value, str)
    if text and (len(value) < schema.get("minLength", 0) or not re.search(schema.get("pattern", ""), value)):
        found.append(f"{where}: not of the expected form")
    if isinstance(value, dict):
        found += [f"{where}.{name}: missing" for name in schema.get("required", []) if name not in value]
        for name, subschema in schema.get("properties", {}).items():
            if name in value:
                found += problems(value[name], subschema, root, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], root, f"{where}[{i}]")
    return found


class Schemas:
    """Beacon's schema file per version of the event, loaded when first needed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loaded: dict[int, dict[str, Any]] = {}

    def of(self, version: int) -> dict[str, Any] | None:
        if version not in self.loaded:
            path = self.folder / f"{EVENT}.v{version}.json"
            if not path.is_file():
                return None  # a version newer than this partner knows
            self.loaded[version] = json.loads(path.read_text(encoding="utf-8"))
        return self.loaded[version]


def award_of(message: dict[str, Any]) -> dict[str, Any]:
    """The award in this partner's terms, from either version (v1 named the levels `level` and
    `previous_level`; v2 `star_level` and `previous_star_level`)."""
    payload = message["payload"]
    v1 = message["schema_version"] == 1
    return {
        "event_id": message["event_id"],
        "district": message["org_path"][0],
        "volunteer": payload["volunteer_number"],
        "stars": payload["level" if v1 else "star_level"],
        "previous": payload["previous_level" if v1 else "previous_star_level"],
        "hours": str(payload["total_hours"]),
        "at": message["occurred_at"],
    }


class Seen:
    """Event ids handled, one a line: a redelivered copy is skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids = set(path.read_text().split()) if path.is_file() else set()

    def add(self, event_id: str) -> None:
        with self.path.open("a") as out:
            out.write(event_id + "\n")
        self.ids.add(event_id)


async def follow(args: argparse.Namespace, stop: asyncio.Event) -> None:
    options: dict[str, Any] = {"servers": args.nats_url.split(",")}
    if args.nkey_seed:
        options["nkeys_seed"] = args.nkey_seed
    if args.inbox_prefix:
        options["inbox_prefix"] = args.inbox_prefix
    nc = await nats.connect(**options)
    schemas, seen = Schemas(args.schemas), Seen(args.seen)
    try:
        js = nc.jetstream()
        subject = SUBJECT.format(district=args.district)
        # The durable's cursor is kept by the server; a new one starts at the stream's beginning.
        config = ConsumerConfig(
            durable_name=args.durable, filter_subject=subject, deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=100,
        )  # fmt: skip
        subscription = await js.pull_subscribe(subject, durable=args.durable, stream=STREAM, config=config)
        print(f"following {subject} as {args.durable}", flush=True)
        while not stop.is_set():
            try:
                messages = await subscription.fetch(batch=50, timeout=1)
            except NatsTimeout:
                continue
            for msg in messages:
                await handle(msg, schemas, seen)
    finally:
        await nc.close()


async def handle(msg: Any, schemas: Schemas, seen: Seen) -> None:
    try:
        message = json.loads(msg.data)
        version = message["schema_version"]
    except (ValueError, KeyError, TypeError):
        print(f"skipped: not a Beacon envelope ({msg.subject})", file=sys.stderr, flush=True)
        await msg.term()
        return
    schema = schemas.of(version)
    if schema is None:
        # A newer version than this partner knows: leave it for an updated partner to read.
        print(f"held back: {EVENT} v{version} is newer than the schemas here", file=sys.stderr, flush=True)
        await msg.nak(delay=60)
        return
    wrong = problems(message, schema, schema)
    if wrong:
        print(f"skipped: {'; '.join(wrong)}", file=sys.stderr, flush=True)
        await msg.term()
        return
    award = award_of(message)
    if award["event_id"] not in seen.ids:
        print("award " + json.dumps(award, sort_keys=True), flush=True)
        seen.add(award["event_id"])
    await msg.ack()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--district", required=True, help="division code of the district, e.g. 370303")
    parser.add_argument("--nats-url", default="nats://localhost:4222")
    parser.add_argument("--nkey-seed", default="", help="the partner user's nkey seed file")
    parser.add_argument("--inbox-prefix", default="", help="the partner user's reply inboxes, e.g. _INBOX.partner")
    parser.add_argument("--durable", default="", help="consumer name (default partner-stars-<district>)")
    parser.add_argument("--schemas", type=Path, default=Path(__file__).resolve().parents[2] / "docs/events/schemas")
    parser.add_argument("--seen", type=Path, default=Path("stars-seen.txt"), help="event ids already handled")
    args = parser.parse_args(argv)
    args.durable = args.durable or f"partner-stars-{args.district}"

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await follow(args, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
