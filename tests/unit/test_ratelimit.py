"""The token bucket: pure arithmetic against a fake clock, then the async waiting with a fake sleep."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.runtime.ratelimit import BucketLevel, TokenBucket, give_back, refill, reserve


class FakeTime:
    """A clock that only moves when something sleeps (or the test moves it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_full_bucket_grants_burst_tokens_at_once_then_one_per_interval():
    level = BucketLevel(3.0, 0.0)
    delays = []
    for _ in range(6):
        level, delay = reserve(level, 0.0, rate=2.0, burst=3.0)
        delays.append(delay)
    assert delays == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_refill_adds_rate_times_elapsed_up_to_the_burst_and_ignores_a_clock_going_back():
    assert refill(BucketLevel(0.0, 10.0), 11.5, rate=2.0, burst=5.0) == BucketLevel(3.0, 11.5)
    assert refill(BucketLevel(0.0, 10.0), 100.0, rate=2.0, burst=5.0) == BucketLevel(5.0, 100.0)
    assert refill(BucketLevel(1.0, 10.0), 9.0, rate=2.0, burst=5.0) == BucketLevel(1.0, 10.0)


def test_a_token_given_back_is_available_again_but_never_beyond_the_burst():
    assert give_back(BucketLevel(-2.0, 0.0), 0.0, rate=1.0, burst=3.0) == BucketLevel(-1.0, 0.0)
    assert give_back(BucketLevel(3.0, 0.0), 0.0, rate=1.0, burst=3.0) == BucketLevel(3.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=200.0),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=80),
)
def test_grants_never_exceed_burst_plus_rate_times_any_window(rate, burst, gaps):
    level = BucketLevel(float(burst), 0.0)
    now, grants = 0.0, []
    for gap in gaps:
        now += gap
        level, delay = reserve(level, now, rate=rate, burst=float(burst))
        assert delay >= 0.0
        grants.append(now + delay)
    # First come, first served: grant times follow request order.
    assert grants == sorted(grants)
    for first in range(len(grants)):
        for last in range(first, len(grants)):
            window = grants[last] - grants[first]
            assert last - first + 1 <= burst + rate * window + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=100.0), burst=st.integers(min_value=1, max_value=20))
def test_requests_spaced_at_the_rate_never_wait(rate, burst):
    level = BucketLevel(float(burst), 0.0)
    for step in range(50):
        level, delay = reserve(level, step / rate, rate=rate, burst=float(burst))
        assert delay == pytest.approx(0.0, abs=1e-9)


async def test_acquire_sleeps_for_its_turn_only_once_the_burst_is_spent():
    fake = FakeTime()
    bucket = TokenBucket(4.0, 2, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):
        await bucket.acquire()
    # Sequential callers: each one's sleep moved the clock on, so each waits one interval.
    assert fake.sleeps == [0.25, 0.25, 0.25]
    assert fake.now == pytest.approx(100.75)
    fake.now += 10.0
    assert bucket.available() == 2.0


async def test_concurrent_callers_queue_in_arrival_order():
    fake = FakeTime()
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    bucket = TokenBucket(10.0, 1, clock=fake.clock, sleep=record)
    await asyncio.gather(*(bucket.acquire() for _ in range(4)))
    assert waits == pytest.approx([0.1, 0.2, 0.3])


async def test_a_cancelled_waiter_gives_its_token_back():
    fake = FakeTime()
    started = asyncio.Event()

    async def forever(_seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    bucket = TokenBucket(1.0, 1, clock=fake.clock, sleep=forever)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await started.wait()
    assert bucket.available() == -1.0
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.available() == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (1.0, 0)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst)
