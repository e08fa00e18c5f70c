"""Backoff: capped exponential ceiling, full jitter, Retry-After honoured, delays mapped to retry tiers."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.domain.backoff import backoff_ceiling, backoff_delay, retry_tier

attempts = st.integers(min_value=0, max_value=10_000)
seconds = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
tier_lists = st.lists(st.integers(min_value=1, max_value=86_400), min_size=1, max_size=10, unique=True)


def constant(value: float):
    return lambda: value


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (500, 10.0)]
)
def test_ceiling_doubles_until_the_cap(attempt, ceiling):
    assert backoff_ceiling(attempt, base=0.5, cap=10.0) == ceiling


def test_huge_attempt_numbers_do_not_overflow():
    assert backoff_ceiling(10**9, base=1.0, cap=60.0) == 60.0


@pytest.mark.parametrize(("attempt", "base", "cap"), [(-1, 1.0, 1.0), (0, 0.0, 1.0), (0, 1.0, -2.0)])
def test_nonsense_arguments_are_refused(attempt, base, cap):
    with pytest.raises(ValueError, match="must be"):
        backoff_ceiling(attempt, base=base, cap=cap)


def test_full_jitter_scales_the_ceiling_by_the_random_draw():
    assert backoff_delay(3, base=1.0, cap=100.0, rand=constant(0.25)) == 2.0
    assert backoff_delay(3, base=1.0, cap=100.0, rand=constant(0.0)) == 0.0


def test_jitter_actually_spreads_delays():
    source = random.Random(7)  # noqa: S311 - reproducible jitter, not cryptography
    delays = {backoff_delay(6, base=1.0, cap=60.0, rand=source.random) for _ in range(50)}
    assert len(delays) == 50
    assert min(delays) < 20.0 < max(delays)


def test_retry_after_below_the_cap_is_a_floor():
    assert backoff_delay(0, base=1.0, cap=60.0, retry_after=7.0, rand=constant(0.0)) == 7.0
    assert backoff_delay(10, base=1.0, cap=60.0, retry_after=7.0, rand=constant(0.5)) == 30.0


def test_retry_after_beyond_the_cap_is_honoured():
    assert backoff_delay(10, base=1.0, cap=60.0, retry_after=300.0, rand=constant(0.999)) == 300.0


def test_an_unusable_retry_after_is_ignored():
    assert backoff_delay(2, base=1.0, cap=60.0, retry_after=math.inf, rand=constant(0.5)) == 2.0


@given(attempt=attempts, base=seconds, cap=seconds, draw=unit)
def test_delay_never_exceeds_the_cap_without_retry_after(attempt, base, cap, draw):
    delay = backoff_delay(attempt, base=base, cap=cap, rand=constant(draw))
    assert 0.0 <= delay <= cap
    assert delay <= backoff_ceiling(attempt, base=base, cap=cap)


@given(attempt=attempts, base=seconds, cap=seconds, retry_after=seconds, draw=unit)
def test_never_sooner_than_asked_and_capped_unless_asked_for_longer(attempt, base, cap, retry_after, draw):
    delay = backoff_delay(attempt, base=base, cap=cap, retry_after=retry_after, rand=constant(draw))
    assert delay >= retry_after
    assert delay <= max(cap, retry_after)


@given(attempt=st.integers(min_value=0, max_value=200), base=seconds, cap=seconds)
def test_ceiling_never_shrinks_as_attempts_grow(attempt, base, cap):
    assert backoff_ceiling(attempt + 1, base=base, cap=cap) >= backoff_ceiling(attempt, base=base, cap=cap)


@pytest.mark.parametrize(
    ("delay", "tier"),
    [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 5), (5.0, 5), (29.9, 30), (120.0, 120), (999, 120)],
)
def test_delay_maps_to_the_smallest_tier_that_waits_long_enough(delay, tier):
    assert retry_tier(delay, (1, 5, 30, 120)) == tier


def test_tiers_need_not_be_sorted():
    assert retry_tier(3.0, (30, 1, 5)) == 5


def test_no_tiers_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        retry_tier(1.0, ())


@given(delay=st.floats(min_value=0.0, max_value=2e5, allow_nan=False), tiers=tier_lists)
def test_tier_is_the_smallest_sufficient_one_or_the_longest(delay, tiers):
    chosen = retry_tier(delay, tiers)
    assert chosen in tiers
    sufficient = [tier for tier in tiers if tier >= delay]
    if sufficient:
        assert chosen == min(sufficient)
    else:
        assert chosen == max(tiers)
