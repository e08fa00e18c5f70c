"""A token bucket for API writes: ``rate_per_s`` on average, at most ``burst`` at once.

The arithmetic (``reserve``) is a pure function of the bucket's level, the elapsed time and the two
limits; ``TokenBucket`` only adds the clock and the sleeping, so both are tested apart.

A caller that finds the bucket empty takes its token anyway, driving the level below zero, and sleeps
until the refill has paid that debt back. Concurrent callers therefore queue up in the order they
arrived, each sleeping exactly as long as its own place in the line requires, and none of them wakes
up only to find the token taken by someone else. A caller cancelled while it sleeps gives its token
back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Returns seconds on a monotonic scale, like ``time.monotonic``."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits that many seconds, like ``asyncio.sleep``."""


@dataclass(frozen=True, slots=True)
class BucketLevel:
    """Tokens in the bucket at instant ``at`` (negative: tokens promised to callers that are waiting)."""

    tokens: float
    at: float


def refill(level: BucketLevel, now: float, *, rate: float, burst: float) -> BucketLevel:
    """The level at ``now``: ``rate`` tokens per second added since ``level.at``, capped at ``burst``.

    A clock that went backwards adds nothing (and does not move ``at`` back).
    """
    elapsed = max(0.0, now - level.at)
    return BucketLevel(min(burst, level.tokens + elapsed * rate), max(now, level.at))


def reserve(level: BucketLevel, now: float, *, rate: float, burst: float) -> tuple[BucketLevel, float]:
    """Take one token at ``now``: the new level and the seconds the caller must wait before using it.

    The wait is zero while tokens are left; otherwise it is the time the refill needs to bring the
    level back to zero, which queues callers one ``1 / rate`` apart.
    """
    current = refill(level, now, rate=rate, burst=burst)
    after = BucketLevel(current.tokens - 1.0, current.at)
    return after, max(0.0, -after.tokens / rate)


def give_back(level: BucketLevel, now: float, *, rate: float, burst: float) -> BucketLevel:
    """Return one unused token (a caller gave up waiting), never beyond ``burst``."""
    current = refill(level, now, rate=rate, burst=burst)
    return BucketLevel(min(burst, current.tokens + 1.0), current.at)


class TokenBucket:
    """Limits API writes to ``rate_per_s`` per second on average, with bursts of up to ``burst``.

    The bucket starts full. ``await acquire()`` before each write; it returns at once while tokens are
    left, and otherwise sleeps for the caller's turn (first come, first served).
    """

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        if not math.isfinite(rate_per_s) or rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._level = BucketLevel(self.burst, clock())

    def available(self) -> float:
        """Tokens in the bucket now (negative while callers are waiting for theirs)."""
        return refill(self._level, self._clock(), rate=self.rate, burst=self.burst).tokens

    async def acquire(self) -> None:
        """Take one token, sleeping until the rate allows it; a cancelled wait returns the token."""
        self._level, delay = reserve(self._level, self._clock(), rate=self.rate, burst=self.burst)
        if delay <= 0:
            return
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            self._level = give_back(self._level, self._clock(), rate=self.rate, burst=self.burst)
            raise
