"""Check-in rush benchmark: the lantern-festival rush of QR scans through dispatch's HTTP API.

Runs dispatch for real: its own nats-server, `python -m services.dispatch` (one uvicorn worker, as
in production; `uvicorn --factory … --workers 2` for the two-worker figure), SQLite in a temp dir,
the outbox relay publishing. The load comes from separate processes (aiohttp), never from the
server's event loop. Every scan is a real one: a signed-up volunteer, the shift's current code
(computed with the service's secret, as the phone reads it off the QR code).

(1) open loop: --volunteers volunteers check in at random (Poisson) times over --arrival-seconds,
    each checking out --stay-seconds after their scheduled check-in (or a minute after their
    check-in was answered, if that is later, so that it is a real check-out and not a repeat).
    Requests go out at their scheduled times whatever the answers, and latency counts from the
    scheduled time: queueing shows (no coordinated omission).
(2) burst: another --volunteers check in over --burst-seconds, and check out the same way, so
    again as a burst over --burst-seconds once the minute has passed.
(3) closed loop: --clients clients scan back to back for --closed-seconds, each scan the first
    check-in of a fresh signed-up (shift, volunteer) pair, with one worker and with two.
(4) the bare baseline: a minimal FastAPI app (below) whose one POST inserts one row into a SQLite
    table through shared.db.make_engine, under the same uvicorn settings, driven by the same
    closed loop, with one worker and with two.

Prints one JSON line per phase and the summary (the goals: open-loop p99 under 100 ms, closed loop
at least half the bare endpoint's requests/s) last. Figures are printed, never asserted. Set-up
shortcuts, none of them on the measured path: dispatch's views of registry (the site, verified
volunteers) are seeded as rows, and the closed-loop pairs are signed up in bulk in-process
through the domain (real events, relayed before any phase starts); the open-loop volunteers sign
up through the API.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import math
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Integer, MetaData, String, Table, update
from sqlalchemy.engine import make_url

from bench._common import jetstream, local_nats_server, main_of, progress, rate, ratio
from services.dispatch.attendance import REPEAT_WINDOW, ShiftCodes
from shared.auth import Role, TokenIssuer, new_key_pair
from shared.bus import StreamSettings, context_stream, ensure_stream
from shared.db import UtcDateTime, make_engine
from shared.devkeys import public_pem_of
from shared.envelope import utcnow
from shared.errors import Invalid
from shared.events.common import VolunteerNumber

try:  # the load generator's client: httpx spends ~9 ms of CPU per request at 200 connections here
    import aiohttp
except ImportError:  # pragma: no cover - said plainly below
    aiohttp = None  # type: ignore[assignment]

NAME = "checkin_rush"
ROOT = Path(__file__).resolve().parent.parent

# Tokens as registry would sign them, with a key pair of the run's own (dispatch is given its public
# half); the load generators, started afresh, find the same pair in the environment.
if "BENCH_RUSH_SIGNING_KEY" not in os.environ:
    os.environ["BENCH_RUSH_SIGNING_KEY"] = new_key_pair()[0].decode()
SIGNING_KEY = os.environ["BENCH_RUSH_SIGNING_KEY"].encode()
VERIFYING_KEY = public_pem_of(SIGNING_KEY)
_issuer = TokenIssuer(SIGNING_KEY, lifetime=timedelta(hours=2))
STAFF_ACCOUNT = "staff-1"
STAFF = {"Authorization": f"Bearer {_issuer.issue(STAFF_ACCOUNT, Role.station_staff, '370303001001', utcnow())}"}


@functools.cache
def volunteer_headers(number: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_issuer.issue(number, Role.volunteer, number, utcnow())}"}


SITE = "ST-LANTERN"
COMMUNITY = "370303001001"
ORG_PATH = ("370303", "370303001000", COMMUNITY)
POST_CAPACITY = 100  # a post at the festival: the open-loop volunteers sign up through the API
POOL_CAPACITY = 1000  # the closed loop's shifts, signed up in bulk
CODE_PERIOD_SECONDS = 30
REPEAT_WINDOW_SECONDS = REPEAT_WINDOW.total_seconds()  # a second scan this soon changes nothing
GOAL_P99_MS = 100.0
GOAL_CLOSED_VS_BARE = 0.5
PHASES = ("open_loop", "burst", "closed_loop", "bare")

QUICK = {
    "volunteers": 100,
    "arrival_seconds": 5.0,
    "burst_seconds": 1.0,
    "stay_seconds": 0.0,
    "clients": 50,
    "closed_seconds": 5.0,
    "bare_seconds": 5.0,
    "workers": "1",
    "reference_clients": 0,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=2000, help="volunteers per open-loop phase (default 2000)")
    parser.add_argument("--arrival-seconds", type=float, default=60.0, help="open-loop arrivals span (default 60)")
    parser.add_argument("--burst-seconds", type=float, default=6.0, help="burst arrivals span (default 6)")
    parser.add_argument(
        "--stay-seconds",
        type=float,
        default=62.0,
        help=f"check-out this long after the scheduled check-in: more than {REPEAT_WINDOW_SECONDS:g}, "
        "or 0 for no check-outs (default 62)",
    )
    parser.add_argument("--clients", type=int, default=200, help="closed-loop clients (default 200)")
    parser.add_argument("--closed-seconds", type=float, default=20.0, help="each closed-loop run (default 20)")
    parser.add_argument(
        "--closed-pairs",
        type=int,
        default=None,
        help="signed-up pairs seeded per dispatch closed-loop run; a run that uses them up ends early "
        "and says so (default 1000 per closed-loop second)",
    )
    parser.add_argument("--bare-seconds", type=float, default=15.0, help="each bare-endpoint run (default 15)")
    parser.add_argument(
        "--reference-clients",
        type=int,
        default=50,
        help="also drive the bare endpoint (one worker) with this many clients, as the issue's reference "
        "figure was taken (default 50; 0 skips it)",
    )
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts for the closed loops (default 1,2)")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"the phases to run, of {','.join(PHASES)} (default all); a subset is for iterating on one "
        "(no summary goal is judged for a phase not run)",
    )
    parser.add_argument("--loadgen-processes", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    parser.add_argument(
        "--log-level", default="info", help="the servers' log level, access log included (default info)"
    )
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="also write every open-loop request's timings to this file (JSON lines)",
    )
    parser.add_argument("--seed", type=int, default=2027, help="arrival times' random seed")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="dispatch's store and the bare endpoint's: SQLite in a temp dir (default), or throwaway "
        "databases on the PostgreSQL at --pg-admin-url (production's store)",
    )
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get("BEACON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL role that may create databases (default $BEACON_TEST_PG_URL or the local one)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of ~40 s: 100 volunteers, no check-outs, 50 clients for 5 s, one worker",
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    try:
        args.workers = sorted({int(w) for w in str(args.workers).split(",") if w.strip()})
    except ValueError:
        parser.error("--workers takes worker counts such as 1,2")
    args.phases = [p.strip() for p in str(args.phases).split(",") if p.strip()]
    if not args.phases or set(args.phases) - set(PHASES):
        parser.error(f"--phases takes phases of {','.join(PHASES)}")
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers takes worker counts such as 1,2")
    if 1 not in args.workers:
        parser.error("--workers must include 1 (the open-loop phases and the goals use one worker)")
    if args.volunteers < 1 or args.clients < 1 or args.loadgen_processes < 1 or args.reference_clients < 0:
        parser.error("sizes must be positive")
    if min(args.arrival_seconds, args.burst_seconds, args.closed_seconds, args.bare_seconds) <= 0:
        parser.error("durations must be positive")
    if args.stay_seconds and args.stay_seconds <= REPEAT_WINDOW_SECONDS:
        parser.error(f"--stay-seconds is 0 or more than {REPEAT_WINDOW_SECONDS:g} (a rescan within it changes nothing)")
    if args.closed_pairs is None:
        args.closed_pairs = max(2000, int(args.closed_seconds * 1000))
    if aiohttp is None:
        parser.error("needs aiohttp (in the test extra: `pip install -r requirements.lock`, or `make lock` first)")
    return args


# --- The bare baseline: one POST, one row -----------------------------------------------------------

bare_metadata = MetaData()
bare_scans = Table(
    "scans",
    bare_metadata,
    Column("scan_id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(200), nullable=False),
    Column("volunteer_number", String(20), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)


class BareScan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=200)
    volunteer_number: VolunteerNumber


def bare_app() -> FastAPI:
    """The baseline (`uvicorn --factory bench.checkin_rush:bare_app`): the same body as a scan,
    one row inserted in its own transaction, BEACON_DATABASE_URL as dispatch reads it. The bench
    creates the table first (two workers would race to)."""
    engine = make_engine(os.environ["BEACON_DATABASE_URL"])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(title="bare baseline", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/scans")
    async def scan(body: BareScan) -> dict[str, Any]:
        at = datetime.now(UTC)
        async with engine.begin() as conn:
            result = await conn.execute(
                bare_scans.insert().values(code=body.code, volunteer_number=body.volunteer_number, at=at)
            )
        return {"result": "inserted", "scan_id": result.inserted_primary_key[0], "at": at.isoformat()}

    return app


# --- Servers as processes -----------------------------------------------------------------------


def cpu_seconds(root: int | None) -> float | None:
    """CPU time (user + system) of a process and its descendants, from /proc; None elsewhere."""
    if root is None or not Path("/proc/self/stat").exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, wanted = 0.0, {root}
    changed = True
    while changed:  # descendants: uvicorn's workers, multiprocessing's helpers
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    for pid in wanted:
        total += used.get(pid, 0.0)
    return total


class Server:
    """A server process of ours (its own session, so that its workers stop with it)."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.label = label
        self.command = command
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def launch(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def start(self, ready_path: str, timeout: float = 90.0) -> None:
        self.launch()
        assert self.process is not None
        # New connections each time, so that with two workers both have answered.
        connector = aiohttp.TCPConnector(force_close=True)
        deadline, answered = time.monotonic() + timeout, 0
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3)) as session:
            while answered < 5:
                if self.process.poll() is not None:
                    raise SystemExit(f"{self.label} exited with {self.process.returncode}:\n{self.tail()}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"{self.label} not ready after {timeout:.0f}s:\n{self.tail()}")
                try:
                    async with session.get(self.url + ready_path) as response:
                        answered = answered + 1 if response.status == 200 else 0
                except (aiohttp.ClientError, TimeoutError):
                    answered = 0
                await asyncio.sleep(0.1 if answered else 0.3)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # our own session: the server and its workers
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def service_env(args: argparse.Namespace, nats_url: str, database_url: str, port: int, secret: bytes) -> dict[str, str]:
    return {
        **os.environ,
        "BEACON_NATS_URL": nats_url,
        "BEACON_DATABASE_URL": database_url,
        "BEACON_HOST": "127.0.0.1",
        "BEACON_PORT": str(port),
        "BEACON_LOG_LEVEL": args.log_level.upper(),
        "BEACON_SHIFT_CODE_SECRET": base64.b64encode(secret).decode(),
        "BEACON_SHIFT_CODE_PERIOD_SECONDS": str(CODE_PERIOD_SECONDS),
        "BEACON_JWT_PUBLIC_KEY_FILE": str(_verifying_key_file()),
    }


@functools.cache
def _verifying_key_file() -> Path:
    path = Path(tempfile.mkdtemp(prefix="beacon-rush-")) / "verifying.pem"
    path.write_bytes(VERIFYING_KEY)
    return path


def dispatch_server(args: argparse.Namespace, env: dict[str, str], workers: int, workdir: Path) -> Server:
    port = int(env["BEACON_PORT"])
    if workers == 1:
        command = [sys.executable, "-m", "services.dispatch"]  # exactly as production runs it
    else:
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "services.dispatch.app:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", args.log_level.lower(),
        ]  # fmt: skip
    return Server(
        f"dispatch ({workers} worker{'s' * (workers > 1)})", command, env, port, workdir / f"dispatch-{workers}w.log"
    )


def bare_server(args: argparse.Namespace, env: dict[str, str], workers: int, workdir: Path) -> Server:
    port = int(env["BEACON_PORT"])
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "bench.checkin_rush:bare_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", args.log_level.lower(),
    ]  # fmt: skip
    return Server(f"bare ({workers} worker{'s' * (workers > 1)})", command, env, port, workdir / f"bare-{workers}w.log")


@asynccontextmanager
async def running(server: Server, ready_path: str) -> AsyncIterator[Server]:
    try:
        await server.start(ready_path)
        yield server
    finally:
        server.stop()


# --- The load generator (runs in its own processes) ------------------------------------------------


@dataclass(frozen=True)
class Sample:
    kind: str  # check_in, check_out, scan
    scheduled: float  # seconds after the start: when it was due (open loop) or sent (closed loop)
    sent: float  # seconds after the start
    latency: float  # seconds from `scheduled` to the whole answer
    status: int  # HTTP status; 0 when no answer (timeout, connection refused or reset)
    outcome: str  # the answer's "result", or what went wrong


@dataclass(frozen=True)
class Job:
    base_url: str
    secret: bytes
    timeout: float
    # open loop: (arrival offset, shift, volunteer) and the stay; closed loop: pairs and clients
    arrivals: Sequence[tuple[float, str, str]] = ()
    stay: float = 0.0
    pairs: Sequence[tuple[str, str]] = ()
    clients: int = 0
    seconds: float = 0.0


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    cpu_seconds: float = 0.0
    pool_used_up_at: float | None = None
    start: float = 0.0  # the common start (time.monotonic(), as every process on the machine reads it)


def _load_generator(job: Job, pipe: Connection) -> None:
    """A load generator process: say ready, take the start time, run the job, send the samples."""
    codes = ShiftCodes(job.secret, CODE_PERIOD_SECONDS)
    pipe.send("ready")
    start = pipe.recv()
    before = os.times()
    outcome = asyncio.run(_generate(job, codes, start))
    after = os.times()
    outcome.cpu_seconds = round(after.user - before.user + after.system - before.system, 2)
    outcome.start = start
    pipe.send(outcome)
    pipe.close()


async def _generate(job: Job, codes: ShiftCodes, start: float) -> Outcome:
    outcome = Outcome()
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)  # open loop: a connection per request in flight
    timeout = aiohttp.ClientTimeout(total=job.timeout)
    async with aiohttp.ClientSession(job.base_url, connector=connector, timeout=timeout) as session:

        async def scan(shift_id: str, volunteer: str) -> tuple[int, str]:
            body = {"code": codes.code_for(shift_id, datetime.now(UTC)), "volunteer_number": volunteer}
            try:
                async with session.post("/scans", json=body, headers=volunteer_headers(volunteer)) as response:
                    data = await response.read()
                    status = response.status
            except TimeoutError:
                return 0, f"no answer in {job.timeout:.0f}s"
            except aiohttp.ClientError as error:
                return 0, f"{type(error).__name__}: {error}"
            if 200 <= status < 300:
                try:
                    return status, str(json.loads(data)["result"])
                except (ValueError, KeyError, TypeError):
                    return status, f"unreadable answer: {data[:200]!r}"
            return status, data[:300].decode(errors="replace")

        async def timed(kind: str, due: float, shift_id: str, volunteer: str) -> float:
            """Send at `due` (seconds after the start) or at once if late; the answer's time."""
            delay = start + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic()
            status, said = await scan(shift_id, volunteer)
            done = time.monotonic()
            outcome.samples.append(Sample(kind, due, sent - start, done - (start + due), status, said))
            return done

        async def volunteer(arrival: float, shift_id: str, number: str) -> None:
            answered = await timed("check_in", arrival, shift_id, number)
            if job.stay:
                # Out when the stay is over, but never within the repeat window of the check-in
                # as the server recorded it (not before its answer): then it would change nothing.
                due = max(arrival + job.stay, answered - start + REPEAT_WINDOW_SECONDS + 1)
                await timed("check_out", due, shift_id, number)

        async def client(pairs: deque[tuple[str, str]], deadline: float) -> None:
            while pairs and time.monotonic() < deadline:
                shift_id, number = pairs.popleft()
                await timed("scan", time.monotonic() - start, shift_id, number)
            if not pairs and outcome.pool_used_up_at is None and time.monotonic() < deadline:
                outcome.pool_used_up_at = time.monotonic() - start

        if job.arrivals:
            await asyncio.gather(*(volunteer(*arrival) for arrival in job.arrivals))
        else:
            delay = start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pairs = deque(job.pairs)
            await asyncio.gather(*(client(pairs, start + job.seconds) for _ in range(job.clients)))
    return outcome


async def generate(jobs: list[Job], lead_seconds: float = 0.5) -> list[Outcome]:
    """Run each job in a process of its own from one common start (a monotonic time: the same
    clock in every process on Linux); what each saw."""
    context = multiprocessing.get_context("spawn")
    started: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for job in jobs:
            ours, theirs = context.Pipe()
            process = context.Process(target=_load_generator, args=(job, theirs), daemon=True)
            process.start()
            theirs.close()
            started.append((process, ours))
        for process, pipe in started:
            if await asyncio.to_thread(pipe.recv) != "ready":
                raise SystemExit(f"load generator {process.pid} did not start")
        start = time.monotonic() + lead_seconds
        for _, pipe in started:
            pipe.send(start)
        outcomes = [await asyncio.to_thread(pipe.recv) for _, pipe in started]
        for process, _ in started:
            process.join(10)
        return outcomes
    finally:
        for process, pipe in started:
            pipe.close()
            if process.is_alive():
                process.terminate()  # only when we failed: each ends by itself after sending
                process.join(5)


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    return [list(items[n::parts]) for n in range(parts)]


# --- Figures -------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest rank."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def latency_figures(samples: Sequence[Sample], prefix: str = "") -> dict[str, Any]:
    latencies = sorted(s.latency for s in samples)
    return {
        f"{prefix}p50_ms": ms(percentile(latencies, 0.50)),
        f"{prefix}p99_ms": ms(percentile(latencies, 0.99)),
        f"{prefix}max_ms": ms(latencies[-1] if latencies else None),
    }


def phase_figures(
    phase: str,
    samples: Sequence[Sample],
    expected: dict[str, str],
    seconds: float,
    server_cpu: float | None,
    nats_cpu: float | None,
    outcomes: Sequence[Outcome],
) -> dict[str, Any]:
    """Latency over every request (errors too: they took that long); a non-2xx answer or none is
    an error, a 2xx with another result than the phase's (e.g. "unchanged") is unexpected."""
    errors = [s for s in samples if not 200 <= s.status < 300]
    unexpected = [s for s in samples if 200 <= s.status < 300 and s.outcome != expected.get(s.kind)]
    figures: dict[str, Any] = {
        "requests": len(samples),
        "errors": len(errors),
        "unexpected": len(unexpected),
        "req_per_s": rate(len(samples), seconds),
        **latency_figures(samples),
    }
    kinds = sorted({s.kind for s in samples})
    if len(kinds) > 1:
        for kind in kinds:
            figures.update(latency_figures([s for s in samples if s.kind == kind], f"{kind}_"))
    lags = sorted(max(0.0, s.sent - s.scheduled) for s in samples)
    figures["send_lag_p99_ms"] = ms(percentile(lags, 0.99))  # the generator's own lateness
    figures["server_cpu_cores"] = round(server_cpu / seconds, 2) if server_cpu is not None and seconds > 0 else None
    figures["nats_cpu_cores"] = round(nats_cpu / seconds, 2) if nats_cpu is not None and seconds > 0 else None
    figures["loadgen_cpu_s"] = round(sum(o.cpu_seconds for o in outcomes), 1)
    for label, bad in (("errors", errors), ("unexpected", unexpected)):
        if bad:
            progress(f"  {phase}: {len(bad)} {label}; most common:")
            for (status, said), count in Counter((s.status, s.outcome[:160]) for s in bad).most_common(5):
                progress(f"    {count} x {status or 'no answer'} {said}")
    return figures


def print_phase(phase: str, workers: int, figures: dict[str, Any]) -> None:
    print(json.dumps({"bench": NAME, "phase": phase, "workers": workers, **figures}), flush=True)
    progress(
        f"  {phase}: {figures['requests']} requests, {figures['errors']} errors, {figures['req_per_s']} req/s, "
        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, server CPU {figures['server_cpu_cores']} cores"
    )


class CpuWatch:
    def __init__(self, *pids: int | None) -> None:
        self.pids = pids
        self.before = [cpu_seconds(pid) for pid in pids]

    def used(self) -> list[float | None]:
        return [
            None if before is None or (now := cpu_seconds(pid)) is None else now - before
            for pid, before in zip(self.pids, self.before, strict=True)
        ]


# --- Phases --------------------------------------------------------------------------------------


async def open_loop(
    phase: str,
    args: argparse.Namespace,
    server: Server,
    nats_pid: int | None,
    secret: bytes,
    volunteers: Sequence[tuple[str, str]],
    span: float,
    rng: random.Random,
) -> dict[str, Any]:
    """Poisson arrivals: N of them over `span` are N uniform times, sorted."""
    times = sorted(rng.uniform(0, span) for _ in volunteers)
    arrivals = [(t, shift_id, number) for t, (shift_id, number) in zip(times, volunteers, strict=True)]
    out = f", out {args.stay_seconds:.0f}s after each" if args.stay_seconds else ", no check-outs"
    progress(f"({phase}) {len(arrivals)} check-ins over {span:g}s{out}")
    jobs = [
        Job(server.url, secret, args.timeout, arrivals=part, stay=args.stay_seconds)
        for part in split(arrivals, args.loadgen_processes)
        if part
    ]
    cpu = CpuWatch(server.pid, nats_pid)
    outcomes = await generate(jobs)
    samples = [s for o in outcomes for s in o.samples]
    seconds = max(s.scheduled + s.latency for s in samples)  # from the start to the last answer
    server_cpu, nats_cpu = cpu.used()
    expected = {"check_in": "checked_in", "check_out": "checked_out"}
    figures = phase_figures(phase, samples, expected, seconds, server_cpu, nats_cpu, outcomes)
    figures["offered_per_s"] = rate(len(arrivals), span)
    figures["seconds"] = round(seconds, 1)
    if args.samples is not None:
        with args.samples.open("a") as out:
            for s in sorted(samples, key=lambda s: s.scheduled):
                print(json.dumps({"phase": phase, "start": outcomes[0].start, **s.__dict__}), file=out)
    print_phase(phase, 1, figures)
    return figures


async def closed_loop(
    phase: str,
    args: argparse.Namespace,
    server: Server,
    nats_pid: int | None,
    workers: int,
    secret: bytes,
    pairs: Sequence[tuple[str, str]],
    seconds: float,
    clients: int,
) -> dict[str, Any]:
    """`clients` clients back to back; the first seconds (connections opening) are left out."""
    progress(f"({phase}) {clients} clients for {seconds:g}s, {workers} worker{'s' * (workers > 1)}, {len(pairs)} pairs")
    processes = min(args.loadgen_processes, clients)
    client_counts = [len(part) for part in split(range(clients), processes)]
    jobs = [
        Job(server.url, secret, args.timeout, pairs=part, clients=clients, seconds=seconds)
        for part, clients in zip(split(pairs, processes), client_counts, strict=True)
    ]
    cpu = CpuWatch(server.pid, nats_pid)
    outcomes = await generate(jobs)
    server_cpu, nats_cpu = cpu.used()
    samples = [s for o in outcomes for s in o.samples]
    used_up = [o.pool_used_up_at for o in outcomes if o.pool_used_up_at is not None]
    end = min([seconds, *used_up])
    warm_up = min(2.0, seconds / 5)
    window = [s for s in samples if s.sent >= warm_up and s.sent + s.latency <= end]
    measured = end - warm_up
    expected = {"scan": "inserted" if phase.startswith("bare") else "checked_in"}
    figures = phase_figures(phase, window, expected, measured, None, None, outcomes)
    wall = max((s.sent + s.latency for s in samples), default=seconds)
    figures["server_cpu_cores"] = round(server_cpu / wall, 2) if server_cpu is not None else None
    figures["nats_cpu_cores"] = round(nats_cpu / wall, 2) if nats_cpu is not None else None
    figures.update(clients=clients, seconds=round(measured, 1), pool_used_up=bool(used_up))
    if used_up:
        progress(f"  {phase}: the {len(pairs)} pairs ran out after {end:.1f}s: measured up to then (--closed-pairs)")
    print_phase(phase, workers, figures)
    return figures


# --- Set-up --------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Who signs up where: volunteers numbered from 1, the open-loop ones by post, the closed-loop
    pools in big shifts (pool shifts are named once opened)."""

    open_loop: list[str]
    burst: list[str]
    pools: list[list[str]]
    preflight: str

    @classmethod
    def make(cls, volunteers: int, pools: int, pool_size: int) -> Plan:
        numbers = (f"V{n:08d}" for n in range(1, 1 + 2 * volunteers + 1 + pools * pool_size))
        open_loop = [next(numbers) for _ in range(volunteers)]
        burst = [next(numbers) for _ in range(volunteers)]
        preflight = next(numbers)
        return cls(open_loop, burst, [[next(numbers) for _ in range(pool_size)] for _ in range(pools)], preflight)

    @property
    def everyone(self) -> list[str]:
        return [*self.open_loop, *self.burst, self.preflight, *(n for pool in self.pools for n in pool)]


async def seed_views(database_url: str, plan: Plan) -> None:
    """Dispatch's tables, and its views of registry's site and volunteers (verified), as rows:
    they stand in for the SiteOpened and VolunteerRegistered/Verified events registry publishes."""
    from services.dispatch import store
    from shared.eventstore import EventStore

    engine = make_engine(database_url)
    try:
        events = EventStore(engine, store.schema)
        await events.create_tables()
        async with events.transaction() as tx:
            await tx.conn.execute(
                store.sites.insert().values(
                    site_id=SITE,
                    org_unit_code=COMMUNITY,
                    org_path="/".join(ORG_PATH),
                    level="station",
                    kind="community",
                    open=True,
                )
            )
            rows = [
                {
                    "volunteer_number": number,
                    "community_code": COMMUNITY,
                    "org_path": "/".join(ORG_PATH),
                    "age_band": "18_34",
                    "skills": "traffic_guidance",
                    "status": "verified",
                }
                for number in plan.everyone
            ]
            for at in range(0, len(rows), 5000):
                await tx.conn.execute(store.volunteers.insert(), rows[at : at + 5000])
    finally:
        await engine.dispose()


async def check(response: aiohttp.ClientResponse, what: str, status: int = 200) -> Any:
    body = await response.text()
    if response.status != status:
        raise SystemExit(f"{what}: {response.status} {body[:500]}")
    return json.loads(body)


async def open_shifts(
    session: aiohttp.ClientSession, url: str, activity_id: str, count: int, capacity: int
) -> list[str]:
    now = datetime.now(UTC)
    body = {
        "starts_at": (now - timedelta(hours=1)).isoformat(),  # under way: check-in is open
        "ends_at": (now + timedelta(hours=6)).isoformat(),  # and the closing job leaves it alone
        "capacity": capacity,
    }
    shift_ids: list[str] = []
    for _ in range(count):
        async with session.post(f"{url}/activities/{activity_id}/shifts", json=body, headers=STAFF) as response:
            shift_ids += (await check(response, "opening a shift", 201))["shift_ids"]
    return shift_ids


async def schedule_festival(session: aiohttp.ClientSession, url: str) -> str:
    from services.dispatch.activities import city_date

    today = city_date(datetime.now(UTC) - timedelta(hours=1))
    body = {
        "site_id": SITE,
        "kind": "festival",
        "theme": "lantern_festival",
        "field": "civilised_traffic",
        "group_served": "public_needs",
        "starts_on": (today - timedelta(days=1)).isoformat(),
        "ends_on": (today + timedelta(days=1)).isoformat(),
        "title": "元宵灯会交通引导 (bench)",
    }
    async with session.post(f"{url}/activities", json=body, headers=STAFF) as response:
        return (await check(response, "scheduling the activity", 201))["activity_id"]


async def sign_up_over_http(
    session: aiohttp.ClientSession, url: str, assignments: Sequence[tuple[str, str]], concurrency: int = 20
) -> float:
    """Through the API, a few at a time; the seconds it took."""
    queue = deque(assignments)
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            shift_id, number = queue.popleft()
            async with session.post(
                f"{url}/shifts/{shift_id}/sign-ups", json={"volunteer_number": number}, headers=STAFF
            ) as response:
                position = (await check(response, f"signing {number} up for {shift_id}"))["position"]
            if position != "confirmed":
                raise SystemExit(f"{number} was {position} on {shift_id}, not confirmed")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def sign_up_in_bulk(database_url: str, assignments: dict[str, list[str]]) -> None:
    """What POST /shifts/{id}/sign-ups does (handlers.activities.sign_up), a shift's worth per
    transaction: the shift's history folded, the domain deciding each sign-up, the events appended
    (their outbox rows with them), the sign-ups view and the shift's counts brought along."""
    from services.dispatch import activities, store
    from shared.events.dispatch import ShiftPosition, VolunteerSignedUp
    from shared.eventstore import EventStore

    engine = make_engine(database_url)
    try:
        events = EventStore(engine, store.schema)
        for shift_id, numbers in assignments.items():
            async with events.transaction() as tx:
                history = await tx.history("shift", shift_id, "shift")
                state = activities.fold_shift(history.payloads)
                assert state is not None
                now, decided = utcnow(), []
                for number in numbers:
                    for event in activities.sign_up(state, number, now):
                        assert isinstance(event, VolunteerSignedUp) and event.position == ShiftPosition.confirmed
                        state = activities.evolve_shift(state, event)
                        decided.append(event)
                await tx.record(shift_id, history.version, decided, org_path=history.org_path, actor=STAFF_ACCOUNT)
                await tx.conn.execute(
                    store.signups.insert(),
                    [
                        {
                            "shift_id": shift_id,
                            "volunteer_number": e.volunteer_number,
                            "position": str(e.position),
                            "signed_up_at": e.at,
                        }
                        for e in decided
                    ],
                )
                shifts = store.shifts
                await tx.conn.execute(
                    update(shifts)
                    .where(shifts.c.shift_id == shift_id)
                    .values(confirmed=len(state.confirmed), waitlisted=len(state.waitlist))
                )
    finally:
        await engine.dispose()


async def outbox_drained(session: aiohttp.ClientSession, server: Server, timeout: float = 300.0) -> None:
    """Wait until the relay has published everything, and dispatch's own consumers (the service
    records it draws up from check-outs, say) have taken it all in: no phase pays for the last
    one's, nor for the set-up's tens of thousands of sign-ups."""
    deadline, depth, behind = time.monotonic() + timeout, None, None
    while time.monotonic() < deadline:
        async with session.get(f"{server.url}/readyz") as response:
            depth = (await response.json()).get("checks", {}).get("outbox_depth")
        if depth == 0:
            async with session.get(f"{server.url}/metrics") as response:
                behind = consumers_behind(await response.text())
            if not behind:
                return
        await asyncio.sleep(0.5)
    raise SystemExit(
        f"{server.label}: after {timeout:.0f}s the outbox holds {depth} rows, consumers behind: {behind}\n{server.tail()}"
    )


def consumers_behind(exposition: str) -> dict[str, float]:
    """The consumers with messages not yet delivered or not yet acknowledged, from /metrics."""
    behind: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith(("beacon_consumer_lag{", "beacon_consumer_ack_pending{")):
            series, _, value = line.rpartition(" ")
            if float(value) > 0:
                behind[series] = float(value)
    return behind


async def preflight(session: aiohttp.ClientSession, server: Server, secret: bytes, shift_id: str, number: str) -> None:
    """One scan before the clock starts: a broken flow fails the benchmark instead of timing 404s."""
    async with session.get(f"{server.url}/shifts/{shift_id}/code", headers=STAFF) as response:
        shown = (await check(response, "reading the shift's code"))["code"]
    try:  # the codes the load generators compute must be the ones the service shows
        ShiftCodes(secret, CODE_PERIOD_SECONDS).verify(shown, shift_id, datetime.now(UTC))
    except Invalid as error:
        raise SystemExit(f"the service's code {shown} is not ours ({error}): is its secret set?") from None
    body = {"code": shown, "volunteer_number": number}
    async with session.post(f"{server.url}/scans", json=body, headers=volunteer_headers(number)) as response:
        result = (await check(response, "the preflight scan"))["result"]
    if result != "checked_in":
        raise SystemExit(f"the preflight scan answered {result!r}, not 'checked_in'")


# --- The run -------------------------------------------------------------------------------------


class Stores:
    """Where the runs keep their data: SQLite files in the work dir, or throwaway PostgreSQL
    databases, dropped at the end."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.kind, self.admin_url, self.workdir = args.database, args.pg_admin_url, workdir
        self.made: list[str] = []

    async def __aenter__(self) -> Self:
        return self

    async def url_for(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / f'{name}.db'}"
        database = f"bench_checkin_{name}_{os.getpid()}"
        await self._admin(f'DROP DATABASE IF EXISTS "{database}"', f'CREATE DATABASE "{database}"')
        self.made.append(database)
        return str(make_url(self.admin_url).set(database=database))

    async def __aexit__(self, *_: object) -> None:
        if self.made:
            await self._admin(*(f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in self.made))

    async def _admin(self, *statements: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(str(make_url(self.admin_url).set(drivername="postgresql")))
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()


@asynccontextmanager
async def local_nats_server_async(workdir: Path) -> AsyncIterator[Any]:
    with local_nats_server(workdir) as nats:
        yield nats


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from shared.natsserver import free_port

    rng = random.Random(args.seed)
    secret = secrets.token_bytes(32)
    dispatch_runs = args.workers
    running_phases = set(args.phases)
    closed_runs = len(dispatch_runs) if "closed_loop" in running_phases else 0
    plan = Plan.make(args.volunteers, closed_runs, args.closed_pairs)
    phases: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {
        "phase": "summary",
        "database": args.database,
        "volunteers": args.volunteers,
        "arrival_seconds": args.arrival_seconds,
        "burst_seconds": args.burst_seconds,
        "stay_seconds": args.stay_seconds,
        "clients": args.clients,
        "log_level": args.log_level,
        "cpus": os.cpu_count(),
        "phases": args.phases,
    }
    async with Stores(args, workdir) as stores, local_nats_server_async(workdir) as nats:
        nats_pid = nats.process.pid if nats.process else None
        async with jetstream(nats.url) as (_nc, js, _errors):
            # Dispatch follows registry and points: it waits for their streams before it is ready.
            for context in ("registry", "points"):
                await ensure_stream(js, context_stream(context, StreamSettings()))
        database_url = await stores.url_for("dispatch")
        progress(f"seeding dispatch's views: a site and {len(plan.everyone)} verified volunteers")
        await seed_views(database_url, plan)
        env = service_env(args, nats.url, database_url, free_port(), secret)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.timeout)) as session:
            # One worker: set-up, the open-loop phases and the first closed loop.
            async with running(dispatch_server(args, env, 1, workdir), "/readyz") as dispatch:
                progress(f"dispatch ready at {dispatch.url}; opening shifts")
                activity_id = await schedule_festival(session, dispatch.url)
                # The first phase's volunteers sign up through the API (posts of 100), the others in bulk.
                through_api = [*(plan.open_loop if "open_loop" in running_phases else ()), plan.preflight]
                groups = [
                    (through_api, POST_CAPACITY),
                    (plan.burst if "burst" in running_phases else [], POST_CAPACITY),
                    *((pool, POOL_CAPACITY) for pool in plan.pools),
                ]
                placed: list[dict[str, list[str]]] = []
                for numbers, capacity in groups:
                    shift_ids = await open_shifts(
                        session, dispatch.url, activity_id, math.ceil(len(numbers) / capacity), capacity
                    )
                    placed.append({s: numbers[n * capacity : (n + 1) * capacity] for n, s in enumerate(shift_ids)})
                where = {
                    number: shift_id for group in placed for shift_id, numbers in group.items() for number in numbers
                }
                progress(f"signing {len(through_api)} volunteers up through the API")
                seconds = await sign_up_over_http(session, dispatch.url, [(where[n], n) for n in through_api])
                summary["sign_up_per_s"] = rate(len(through_api), seconds)
                progress(f"  {len(through_api)} sign-ups in {seconds:.1f}s: {summary['sign_up_per_s']}/s")
                progress(
                    f"signing {sum(len(n) for n, _ in groups[1:])} more up in bulk on {sum(map(len, placed[1:]))} shifts"
                )
                for assignments in filter(None, placed[1:]):
                    await sign_up_in_bulk(database_url, assignments)
                pool_pairs = [[(s, n) for s, numbers in group.items() for n in numbers] for group in placed[2:]]
                progress("waiting for the relay to publish the set-up's events")
                await outbox_drained(session, dispatch)
                await preflight(session, dispatch, secret, where[plan.preflight], plan.preflight)

                if "open_loop" in running_phases:
                    phases["open_loop"] = await open_loop(
                        "open_loop", args, dispatch, nats_pid, secret,
                        [(where[n], n) for n in plan.open_loop], args.arrival_seconds, rng,
                    )  # fmt: skip
                    await outbox_drained(session, dispatch)
                else:  # the open loop's draws all the same: the burst's arrivals are a full run's
                    for _ in plan.open_loop:
                        rng.random()
                if "burst" in running_phases:
                    phases["burst"] = await open_loop(
                        "burst", args, dispatch, nats_pid, secret,
                        [(where[n], n) for n in plan.burst], args.burst_seconds, rng,
                    )  # fmt: skip
                    await outbox_drained(session, dispatch)
                if closed_runs:
                    phases["closed_loop"] = await closed_loop(
                        "closed_loop", args, dispatch, nats_pid, 1, secret, pool_pairs[0], args.closed_seconds,
                        args.clients,
                    )  # fmt: skip
                    await outbox_drained(session, dispatch)
            for index, workers in enumerate(dispatch_runs[1:closed_runs], start=1):
                async with running(dispatch_server(args, env, workers, workdir), "/readyz") as dispatch:
                    await outbox_drained(session, dispatch)
                    phases[f"closed_loop_{workers}w"] = await closed_loop(
                        f"closed_loop_{workers}w", args, dispatch, nats_pid, workers, secret, pool_pairs[index],
                        args.closed_seconds, args.clients,
                    )  # fmt: skip

            # The baseline, each run on a fresh table of its own.
            bare_runs = [("bare" if w == 1 else f"bare_{w}w", w, args.clients) for w in args.workers]
            if "bare" not in running_phases:
                bare_runs = []
            elif args.reference_clients:
                bare_runs.append((f"bare_{args.reference_clients}_clients", 1, args.reference_clients))
            for name, workers, clients in bare_runs:
                bare_url = await stores.url_for(name)
                engine = make_engine(bare_url)
                try:
                    async with engine.begin() as conn:
                        await conn.run_sync(bare_metadata.create_all)
                finally:
                    await engine.dispose()
                bare_env = {**env, "BEACON_DATABASE_URL": bare_url, "BEACON_PORT": str(free_port())}
                async with running(bare_server(args, bare_env, workers, workdir), "/healthz") as bare:
                    # Any numbers will do: the bare endpoint only stores what it is sent. Enough for
                    # 5,000 req/s (the issue saw 2,200 with one worker, 4,700 with two).
                    pairs = [(f"SH{n % 997:08d}", f"V{n:08d}") for n in range(1, int(args.bare_seconds * 5000))]
                    phases[name] = await closed_loop(
                        name, args, bare, None, workers, secret, pairs, args.bare_seconds, clients
                    )

    for name, figures in phases.items():
        summary[f"{name}_req_per_s"] = figures["req_per_s"]
        summary[f"{name}_p99_ms"] = figures["p99_ms"]
        for kind in ("check_in", "check_out"):
            if f"{kind}_p99_ms" in figures:
                summary[f"{name}_{kind}_p99_ms"] = figures[f"{kind}_p99_ms"]
        summary[f"{name}_errors"] = figures["errors"] + figures["unexpected"]
    for phase in ("open_loop", "burst"):
        if phase in phases:
            p99 = phases[phase]["p99_ms"]
            summary[f"goal_{phase}_p99_under_{GOAL_P99_MS:g}ms"] = p99 is not None and p99 < GOAL_P99_MS
    if {"closed_loop", "bare"} <= running_phases:
        for workers in args.workers:
            closed, bare = ("closed_loop", "bare") if workers == 1 else (f"closed_loop_{workers}w", f"bare_{workers}w")
            summary[f"{closed}_vs_{bare}"] = ratio(phases[closed]["req_per_s"], phases[bare]["req_per_s"])
        met = summary["closed_loop_vs_bare"] is not None and summary["closed_loop_vs_bare"] >= GOAL_CLOSED_VS_BARE
        summary[f"goal_closed_vs_bare_at_least_{GOAL_CLOSED_VS_BARE:g}"] = met
    return summary


main = main_of(NAME, parse_args, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
