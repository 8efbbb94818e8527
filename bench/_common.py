"""Helpers shared by the benchmarks (not a benchmark itself: the runner skips `_` modules)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from shared.natsserver import LocalNatsServer
from shared.replay import process_peak_rss_mb

T = TypeVar("T")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, or since `reset_peak_rss`."""
    return round(process_peak_rss_mb(), 1)


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory afresh (Linux), so that `peak_rss_mb` measures
    one phase of a benchmark; False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * resource.getpagesize() / (1024 * 1024), 1)


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def progress(message: str) -> None:
    print(message, flush=True)


def emit(name: str, figures: dict[str, Any]) -> None:
    """The benchmark's result: one JSON object on one line, printed last."""
    sys.stdout.flush()
    sys.stderr.flush()
    print(json.dumps({"bench": name, **figures}), flush=True)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop our nats-server and remove temp dirs
    (the server runs in its own session and would otherwise outlive us)."""

    def _raise(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _raise)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


class NatsErrors:
    """Counts the client's asynchronous errors (slow consumer drops above all) instead of
    logging each one, and says the first of each kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def on_error(self, error: Exception) -> None:
        kind = type(error).__name__
        if not self.counts[kind]:
            print(f"nats client error (first {kind}): {error}", file=sys.stderr, flush=True)
        self.counts[kind] += 1

    def count(self, kind: str) -> int:
        return self.counts[kind]


@contextmanager
def local_nats_server(workdir: Path) -> Iterator[LocalNatsServer]:
    """A nats-server of our own, JetStream stored under `workdir`, stopped on the way out."""
    server = LocalNatsServer(workdir / "nats", log_file=workdir / "nats-server.log").start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[tuple[Client, JetStreamContext, NatsErrors]]:
    """A client of our server; each phase of a benchmark takes its own, so that a phase that
    broke its connection (a slow consumer, a stuck reader) cannot slow down the next one."""
    errors = NatsErrors()
    nc = await nats.connect(url, max_reconnect_attempts=0, error_cb=errors.on_error)
    try:
        yield nc, nc.jetstream(), errors
    finally:
        await close_quietly(nc)


async def close_quietly(nc: Client) -> None:
    if nc.is_closed:
        return
    with contextlib.suppress(Exception, asyncio.CancelledError):  # tearing down; the server goes next
        await asyncio.wait_for(nc.close(), 10)


class Stalled(Exception):
    pass


async def watched(
    work: Awaitable[T],
    counter: Callable[[], int],
    stall_seconds: float,
    what: str,
    broken: Callable[[], str | None] = lambda: None,
    abort: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Await `work`, but give up (cancelling it) once `counter()` has not moved for
    `stall_seconds`, or as soon as `broken()` says why the result is already wrong: a hung or
    lossy reader fails the benchmark instead of hanging `make bench`."""
    task = asyncio.ensure_future(work)
    last, since = counter(), time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if reason := broken():
                raise Stalled(f"{what}: {reason} (after {counter()})")
            now, value = time.monotonic(), counter()
            if value != last:
                last, since = value, now
            elif now - since >= stall_seconds:
                raise Stalled(f"{what}: no progress for {stall_seconds:.0f}s (stuck at {value})")
    finally:
        if not task.done():
            # Cancel it; should it not stop (a reader may swallow the cancellation and wait for
            # messages that were dropped), `abort` (closing its connection) makes it stop.
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)
            if not task.done() and abort is not None:
                await abort()
                await asyncio.wait({task}, timeout=5.0)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: it failed while we gave up on it


def main_of(name: str, parse_args: Callable[[list[str]], Any], run: Callable[[Any, Path], Awaitable[dict[str, Any]]]) -> Callable[[list[str]], int]:
    """The `main` of a simple benchmark: parse, run in a temp dir, print the figures last."""

    def main(argv: list[str]) -> int:
        import tempfile

        exit_cleanly_on_sigterm()
        args = parse_args(argv)
        with tempfile.TemporaryDirectory(prefix="beacon-bench-") as tmp:
            figures = asyncio.run(run(args, Path(tmp)))
        figures["peak_rss_mb"] = peak_rss_mb()
        emit(name, figures)
        return 0

    return main
