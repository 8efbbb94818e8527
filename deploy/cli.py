"""`beacon`: run the city, load the demo, see how it stands, replay, import, and work the
dead letters.

Where the services and NATS are: the options, else BEACON_<SERVICE>_URL and BEACON_NATS_URL, else
what `beacon run` (or `make run`) wrote in its data folder (`city.json`), else the default ports on
this machine. Who acts: --token (BEACON_TOKEN), else --username/--password (BEACON_USERNAME,
BEACON_PASSWORD) signed in at registry, else the demo city's admin of a local run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import nats
import nats.errors
import typer
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from deploy import demo_city
from shared.bus import (
    CONSUMER,
    DEAD_LETTER_SEQUENCE,
    DEAD_LETTER_STREAM,
    ORIGINAL_SEQUENCE,
    ORIGINAL_STREAM,
    REASON,
    RETRY_STREAM,
    inbox_prefix,
    send_back,
)
from shared.settings import DEFAULT_PORTS

SERVICES = tuple(DEFAULT_PORTS)
CITY_FILE = "city.json"  # what a local run writes in its data folder: its URLs

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, rich_markup_mode="markdown")
dlq = typer.Typer(help="The dead letters: events a consumer would not apply, with why.", no_args_is_help=True)
importing = typer.Typer(help="Bulk imports.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
app.add_typer(importing, name="import")
console = Console()

DataOption = Annotated[Path, typer.Option(help="A local run's data folder (its city.json, admin password).")]
TokenOption = Annotated[str | None, typer.Option(envvar="BEACON_TOKEN", help="An access token.")]
UsernameOption = Annotated[str | None, typer.Option(envvar="BEACON_USERNAME", help="Sign in as this account.")]
PasswordOption = Annotated[str | None, typer.Option(envvar="BEACON_PASSWORD", help="Its password.")]
NatsOption = Annotated[str | None, typer.Option(envvar="BEACON_NATS_URL", help="The NATS server.")]
SeedOption = Annotated[
    Path | None, typer.Option(envvar="BEACON_NATS_NKEY_SEED_FILE", help="An nkey seed to sign in to NATS with.")
]


@dataclass
class City:
    """Where the city's parts answer."""

    urls: dict[str, str]
    nats_url: str
    admin_password: str | None

    @classmethod
    def find(cls, data: Path, nats_url: str | None = None) -> City:
        written: dict[str, Any] = {}
        if (data / CITY_FILE).exists():
            written = json.loads((data / CITY_FILE).read_text())
        urls = {
            name: os.environ.get(f"BEACON_{name.upper()}_URL")
            or written.get("urls", {}).get(name)
            or f"http://127.0.0.1:{port}"
            for name, port in DEFAULT_PORTS.items()
        }
        password_file = data / "admin-password.txt"
        password = password_file.read_text().splitlines()[0] if password_file.exists() else None
        return cls(urls, nats_url or written.get("nats_url") or "nats://127.0.0.1:4222", password)

    def token(self, token: str | None, username: str | None, password: str | None) -> str:
        if token:
            return token
        if username and password:
            return demo_city.sign_in(self.urls["registry"], username, password)
        if self.admin_password:
            return demo_city.sign_in(self.urls["registry"], demo_city.ADMIN_USERNAME, self.admin_password)
        raise typer.BadParameter("no way to sign in: give --token, or --username and --password")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(1)


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise _fail(f"{response.request.method} {response.request.url.path}: {response.status_code} {detail}")
    return response.json()


@app.command()
def run(
    data: Annotated[Path, typer.Option(help="Folder for the stores, NATS and logs.")] = Path("data"),
    nats_url: Annotated[str | None, typer.Option(help="Use this NATS server instead of starting one.")] = None,
    base_port: Annotated[int | None, typer.Option(help="First of four consecutive service ports.")] = None,
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Do not load the demo city.")] = False,
) -> None:
    """What `make run` does: NATS and the four services on this machine, a demo city; Ctrl-C stops."""
    from deploy import local

    argv = ["--data", str(data)] + (["--nats-url", nats_url] if nats_url else [])
    argv += (["--base-port", str(base_port)] if base_port else []) + (["--no-demo"] if no_demo else [])
    raise typer.Exit(local.main(argv))


@app.command()
def demo(
    data: DataOption = Path("data"),
    token: TokenOption = None,
    username: UsernameOption = None,
    password: PasswordOption = None,
) -> None:
    """Load the demo city into running services (what is there already is left as it is)."""
    city = City.find(data)
    bearer = city.token(token, username, password)
    with console.status("loading the demo city"):
        made = demo_city.load(city.urls["registry"], bearer)
        activity = demo_city.load_dispatch(city.urls["dispatch"], bearer)
        shop = demo_city.load_points(city.urls["points"], token=bearer)
    console.print(
        f"demo city: {made['org_units']} org units, {made['sites']} sites, {made['volunteers']} volunteers new; "
        f"activity {activity['activity_id']} (shift {activity['shift_id']}), shop at {shop}"
    )


async def _connect(nats_url: str, seed: Path | None) -> nats.NATS:
    # Replies in the operator's own inboxes: the operator's NATS user may read no other's.
    options: dict[str, Any] = {
        "connect_timeout": 3,
        "max_reconnect_attempts": 0,
        "inbox_prefix": inbox_prefix("operator"),
    }
    if seed is not None:
        options["nkeys_seed"] = str(seed)
    try:
        return await nats.connect(nats_url, **options)
    except (OSError, TimeoutError, nats.errors.Error) as error:
        raise _fail(f"NATS at {nats_url} did not answer: {error!r}") from None


async def _streams(nats_url: str, seed: Path | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nc = await _connect(nats_url, seed)
    try:
        js = nc.jetstream()
        streams, consumers = [], []
        for info in await js.streams_info():
            name = info.config.name
            streams.append({"stream": name, "messages": info.state.messages, "last": info.state.last_seq})
            for consumer in await js.consumers_info(name):
                consumers.append({
                    "stream": name, "consumer": consumer.name, "pending": consumer.num_pending,
                    "unacknowledged": consumer.num_ack_pending, "redelivered": consumer.num_redelivered,
                })  # fmt: skip
        return streams, consumers
    finally:
        await nc.close()


@app.command()
def status(data: DataOption = Path("data"), nats_url: NatsOption = None, nats_seed: SeedOption = None) -> None:
    """The services (ready, outbox depth), the streams, every consumer's lag, and the dead letters."""
    city = City.find(data, nats_url)
    services = Table("service", "url", "state", "outbox depth", "checks not ok", title="services")
    with httpx.Client(timeout=5) as client:
        for name, url in city.urls.items():
            try:
                answer = client.get(f"{url}/readyz").json()
            except (httpx.HTTPError, ValueError) as error:
                services.add_row(name, url, "[red]unreachable[/red]", "", type(error).__name__)
                continue
            checks = answer.get("checks", {})
            failing = [f"{k}: {v}" for k, v in checks.items() if k != "outbox_depth" and v != "ok"]
            state = (
                "[green]ready[/green]"
                if answer.get("status") == "ready"
                else f"[yellow]{answer.get('status')}[/yellow]"
            )
            services.add_row(name, url, state, str(checks.get("outbox_depth", "")), "; ".join(failing))
    console.print(services)
    streams, consumers = asyncio.run(_streams(city.nats_url, nats_seed))
    stream_table = Table("stream", "messages", "last sequence", title=f"streams at {city.nats_url}")
    for row in streams:
        stream_table.add_row(row["stream"], str(row["messages"]), str(row["last"]))
    console.print(stream_table)
    consumer_table = Table("stream", "consumer", "lag", "unacknowledged", "redelivered", title="consumers")
    for row in sorted(consumers, key=lambda r: (r["stream"], r["consumer"])):
        lag = row["pending"]
        consumer_table.add_row(row["stream"], row["consumer"], f"[yellow]{lag}[/yellow]" if lag else "0",
                               str(row["unacknowledged"]), str(row["redelivered"]))  # fmt: skip
    console.print(consumer_table)
    dead = next((row["messages"] for row in streams if row["stream"] == DEAD_LETTER_STREAM), 0)
    console.print(f"dead letters: [{'red' if dead else 'green'}]{dead}[/]" + ("  (beacon dlq list)" if dead else ""))


@app.command()
def replay(
    projection: Annotated[str, typer.Argument(help="The projection to rebuild from the streams: figures.")],
    data: DataOption = Path("data"),
    token: TokenOption = None,
    username: UsernameOption = None,
    password: PasswordOption = None,
) -> None:
    """Rebuild a projection of reporting from sequence 1 of the streams, with progress; the current
    figures serve until the new ones are complete."""
    if projection != "figures":
        raise typer.BadParameter(f"reporting has one projection, figures (not {projection!r})", param_hint="PROJECTION")
    city = City.find(data)
    headers = {"Authorization": f"Bearer {city.token(token, username, password)}"}
    with httpx.Client(base_url=city.urls["reporting"], headers=headers, timeout=30) as client:
        state = _answer(client.post("/admin/rebuild"))
        with _progress() as progress:
            bars: dict[str, Any] = {}
            while state["state"] == "running":
                for stream, where in state["streams"].items():
                    if stream not in bars:
                        bars[stream] = progress.add_task(stream, total=max(where["last"], 1))
                    progress.update(bars[stream], completed=where["position"])
                time.sleep(0.2)
                state = _answer(client.get("/admin/rebuild"))
            for stream, where in state["streams"].items():
                if stream in bars:
                    progress.update(bars[stream], completed=where["last"])
    if state["state"] != "done":
        raise _fail(f"the rebuild {state['state']}: {state.get('error')}")
    console.print(f"figures rebuilt into generation {state['generation']} in {state['seconds']} s")


def _progress(*columns: Any) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), *columns, TimeRemainingColumn(),
                    console=console)  # fmt: skip


@importing.command("volunteers")
def import_volunteers(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A CSV file as the provincial platform exports it.")
    ],
    data: DataOption = Path("data"),
    token: TokenOption = None,
    username: UsernameOption = None,
    password: PasswordOption = None,
) -> None:
    """Register every good row of a volunteers' CSV file at registry (a row already registered is
    skipped: sending the same file again imports nothing twice)."""
    city = City.find(data)
    headers = {"Authorization": f"Bearer {city.token(token, username, password)}", "content-type": "text/csv"}
    size = file.stat().st_size
    with _progress(DownloadColumn()) as progress:
        sending = progress.add_task(f"sending {file.name}", total=size)

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as source:
                while chunk := source.read(64 * 1024):
                    progress.advance(sending, len(chunk))
                    yield chunk

        with httpx.Client(base_url=city.urls["registry"], timeout=None) as client:
            report = _answer(client.post("/volunteers/import", content=chunks(), headers=headers))
    console.print(
        f"rows {report['rows']}: imported {report['imported']}, skipped {report['skipped']}, refused {report['refused']}"
    )
    for problem in report.get("problems", [])[:20]:
        console.print(f"  line {problem['line']}: {problem['reason']}")
    if report.get("stopped"):
        console.print(f"[yellow]stopped early: {report['stopped']}[/yellow]")


async def _sent_back(js: Any) -> set[int]:
    """The dead letters already sent back (their sequences), read off the retry stream."""
    try:
        info = await js.stream_info(RETRY_STREAM)
    except NotFoundError:
        return set()
    sent = set()
    for sequence in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
        try:
            message = await js.get_msg(RETRY_STREAM, sequence)
        except NotFoundError:
            continue
        sent.add(int((message.headers or {}).get(DEAD_LETTER_SEQUENCE, 0)))
    return sent


async def _dead_letters(nats_url: str, seed: Path | None, consumer: str | None, limit: int) -> list[dict[str, Any]]:
    nc = await _connect(nats_url, seed)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(DEAD_LETTER_STREAM)
        except NotFoundError:
            return []
        sent_back = await _sent_back(js)
        letters: list[dict[str, Any]] = []
        if info.state.messages == 0:
            return letters
        sequence = info.state.first_seq
        while sequence <= info.state.last_seq and len(letters) < limit:
            try:
                message = await js.get_msg(DEAD_LETTER_STREAM, sequence)
            except NotFoundError:  # removed since
                sequence += 1
                continue
            headers = message.headers or {}
            letter = {
                "sequence": sequence, "consumer": headers.get(CONSUMER, "?"), "subject": message.subject,
                "stream": headers.get(ORIGINAL_STREAM, "?"), "stream_sequence": headers.get(ORIGINAL_SEQUENCE, "?"),
                "reason": headers.get(REASON, ""), "sent_back": sequence in sent_back,
            }  # fmt: skip
            if consumer is None or letter["consumer"] == consumer:
                letters.append(letter)
            sequence += 1
        return letters
    finally:
        await nc.close()


@dlq.command("list")
def dlq_list(
    data: DataOption = Path("data"),
    nats_url: NatsOption = None,
    nats_seed: SeedOption = None,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
) -> None:
    """Each dead letter: which consumer refused which event, and why."""
    letters = asyncio.run(_dead_letters(City.find(data, nats_url).nats_url, nats_seed, consumer, limit))
    table = Table("#", "consumer", "original", "subject", "reason", "sent back", title=f"dead letters ({len(letters)})")
    for letter in letters:
        table.add_row(str(letter["sequence"]), letter["consumer"], f"{letter['stream']} #{letter['stream_sequence']}",
                      letter["subject"], letter["reason"], "yes" if letter["sent_back"] else "")  # fmt: skip
    console.print(table)


async def _send_back(nats_url: str, seed: Path | None, sequences: list[int]) -> list[tuple[int, str]]:
    """Each letter sent back to its consumer: (sequence, what happened)."""
    nc = await _connect(nats_url, seed)
    try:
        js = nc.jetstream()
        done = []
        for sequence in sequences:
            letter = await js.get_msg(DEAD_LETTER_STREAM, sequence)
            consumer = (letter.headers or {}).get(CONSUMER, "?")
            try:
                await js.consumer_info(RETRY_STREAM, f"{consumer}-retry")
            except NotFoundError:
                # A stream follower (the ledger, reporting's figures) reads its stream in order and
                # takes nothing back: its letter stays on record; a rebuild reads the stream again.
                done.append((sequence, f"not sent: {consumer} takes no retries (it follows its stream in order)"))
                continue
            await send_back(js, sequence)
            done.append((sequence, f"sent back to {consumer}"))
        return done
    finally:
        await nc.close()


@dlq.command("retry")
def dlq_retry(
    sequences: Annotated[list[int] | None, typer.Argument(help="The letters' numbers (beacon dlq list).")] = None,
    data: DataOption = Path("data"),
    nats_url: NatsOption = None,
    nats_seed: SeedOption = None,
    consumer: Annotated[str | None, typer.Option(help="Every letter of this consumer not yet sent back.")] = None,
) -> None:
    """Send dead letters back to the consumer that refused them, once the cause is fixed: it
    applies each like any delivery (an event it applied meanwhile is skipped), and a letter it
    refuses again is dead-lettered again."""
    url = City.find(data, nats_url).nats_url
    chosen = list(sequences or [])
    if consumer is not None:
        letters = asyncio.run(_dead_letters(url, nats_seed, consumer, 100_000))
        chosen += [letter["sequence"] for letter in letters if not letter["sent_back"]]
    if not chosen:
        raise typer.BadParameter("name the letters to send back, or --consumer")
    for sequence, outcome in asyncio.run(_send_back(url, nats_seed, sorted(set(chosen)))):
        console.print(f"#{sequence}: {outcome}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
