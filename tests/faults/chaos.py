"""Faults at random moments: each service SIGKILLed and started again, nats-server killed and
started again on the same port and store."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.faults.city import ProcessCity

NATS = "nats-server"


@dataclass
class Chaos:
    city: ProcessCity
    kills_per_service: int
    nats_restarts: int
    window_seconds: float
    seed: int = 1
    done: Counter[str] = field(default_factory=Counter)
    finished: bool = False
    log: list[str] = field(default_factory=list)

    async def run(self) -> None:
        rng = random.Random(self.seed)
        faults = [name for name in self.city.services for _ in range(self.kills_per_service)]
        faults += [NATS] * self.nats_restarts
        rng.shuffle(faults)
        moments = sorted(rng.uniform(1.0, self.window_seconds) for _ in faults)
        started = time.monotonic()
        restarts: dict[str, asyncio.Task[None]] = {}
        try:
            for moment, target in zip(moments, faults, strict=True):
                await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
                if target in restarts:  # hit a running service, not one still starting
                    await restarts.pop(target)
                at = time.monotonic() - started
                if target == NATS:
                    down = rng.uniform(0.5, 3.0)
                    await asyncio.to_thread(self.city.restart_nats, down)
                    self.log.append(f"{at:6.1f}s nats-server killed, back after {down:.1f}s")
                else:
                    service = self.city.services[target]
                    service.kill()
                    self.log.append(f"{at:6.1f}s {target} killed")
                    restarts[target] = asyncio.ensure_future(self._restart(target, rng.uniform(0.0, 1.0)))
                self.done[target] += 1
            await asyncio.gather(*restarts.values())
        finally:
            self.finished = True

    async def _restart(self, name: str, after: float) -> None:
        await asyncio.sleep(after)
        service = self.city.services[name]
        service.start()
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if not service.alive():
                    raise RuntimeError(f"{name} exited after a restart:\n{service.tail()}")
                try:
                    if (await client.get(service.url + "/healthz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{name} did not answer within 90s of its restart:\n{service.tail()}")
