"""Waiting for an asynchronous outcome, with a deadline (a failure, not a hang)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            # Raised here, not left to the caller: a wait whose result goes unchecked once
            # spent four minutes of every run on a condition that could never hold.
            raise AssertionError(f"not so within {timeout} s; last seen: {value!r:.500}")
        await asyncio.sleep(0.05)
