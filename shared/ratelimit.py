"""Rate limits: how often one caller may do what is costly or abusable (sign in, check in, place
an order); beyond it, 429 with `Retry-After`.

A token bucket per caller: a signed-in caller by account, anyone else by address. The buckets
live in the service's process (on its app), so N replicas allow N times the rate: enough against
a runaway client or a script, not a substitute for a limit at the edge.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from shared.auth import Actor
from shared.errors import TooManyAttempts

_MOST_CALLERS_KEPT = 100_000  # the least recently seen are forgotten first (a full bucket again)


@dataclass(frozen=True)
class RateLimit:
    """`per_minute` on average, up to `burst` at once, for each caller of the routes it guards."""

    name: str
    per_minute: float
    burst: int

    @property
    def description(self) -> dict[str, object]:
        return {"name": self.name, "per_minute": self.per_minute, "burst": self.burst}


class Buckets:
    """One rate limit's buckets: tokens left and when they were counted, by caller."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, caller: str) -> float:
        """Take a token for `caller`: 0 if there was one, else the seconds until there is."""
        now = self.clock()
        rate = self.limit.per_minute / 60
        tokens, counted = self._buckets.pop(caller, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + (now - counted) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        self._buckets[caller] = (tokens, now)
        if len(self._buckets) > _MOST_CALLERS_KEPT:
            self._buckets.popitem(last=False)
        return wait


def caller_of(request: Request, actor: Actor) -> str:
    if actor.role is not None:
        return f"account:{actor.id}"
    return f"address:{request.client.host if request.client else 'unknown'}"


def check(limit: RateLimit, request: Request, actor: Actor) -> None:
    """Count this request against `limit` for its caller; 429 when there is nothing left."""
    state = request.app.state
    if not hasattr(state, "rate_limits"):
        state.rate_limits = {}
    buckets = state.rate_limits.setdefault(limit.name, Buckets(limit))
    wait = buckets.take(caller_of(request, actor))
    if wait > 0:
        raise TooManyAttempts(
            f"too many requests to {limit.name}: at most {limit.per_minute:g} a minute ({limit.burst} at once)",
            retry_after=max(1, math.ceil(wait)),
        )
