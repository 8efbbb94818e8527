"""The tests' wait for an asynchronous outcome: it returns what it saw, or fails at its deadline."""

from __future__ import annotations

import pytest

from tests.infra.waiting import eventually


async def test_a_wait_returns_the_first_value_that_meets_its_condition() -> None:
    seen = iter(range(10))

    async def probe() -> int:
        return next(seen)

    assert await eventually(probe, lambda n: n >= 3, timeout=5) == 3


async def test_a_wait_whose_condition_never_holds_fails_at_its_deadline() -> None:
    async def probe() -> str:
        return "stuck"

    with pytest.raises(AssertionError, match="within 0.1 s; last seen: 'stuck'"):
        await eventually(probe, lambda value: value == "done", timeout=0.1)
