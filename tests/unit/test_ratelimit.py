"""Token buckets: a burst at once, then the average rate, and how long to wait in between."""

from __future__ import annotations

from shared.ratelimit import Buckets, RateLimit


def test_a_caller_gets_a_burst_then_one_request_per_interval_and_is_told_how_long_to_wait() -> None:
    now = [0.0]
    buckets = Buckets(RateLimit("scans", per_minute=12, burst=3), clock=lambda: now[0])
    assert [buckets.take("V1") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("V1") == 5.0  # one token every 5 s
    assert buckets.take("V2") == 0  # each caller has a bucket of their own
    now[0] = 5.0
    assert buckets.take("V1") == 0 and buckets.take("V1") > 0
    now[0] = 600.0  # a long pause fills the bucket up to the burst, not beyond
    assert [buckets.take("V1") for _ in range(4)][-2:] == [0, 5.0]
