"""When to try again: capped exponential backoff with full jitter, honouring the server's Retry-After.

Pure functions; the random source is a parameter so tests can pin it.

Full jitter (a uniform delay between 0 and the exponential ceiling) spreads the retries of many
replicas that failed at the same moment, instead of having them return together. A server that says
how long to wait (HTTP ``Retry-After``, Kubernetes ``retryAfterSeconds``) is never retried sooner,
even when that is longer than the cap: the cap bounds our guess, not the server's request.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

RandomSource = Callable[[], float]
"""Returns a float in [0, 1), like ``random.random``."""


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """``min(cap, base * 2**attempt)``: the longest delay jitter may pick for retry number ``attempt``.

    ``attempt`` counts retries already made (0 before the first retry).
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base <= 0 or cap <= 0:
        raise ValueError(f"base and cap must be positive, got base={base}, cap={cap}")
    # Compare exponents instead of computing 2**attempt, which overflows a float for large attempts.
    if attempt >= math.log2(cap / base):
        return cap
    return base * 2.0**attempt


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: RandomSource = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter, then Retry-After.

    The jittered delay is uniform in ``[0, backoff_ceiling(attempt))``; a ``retry_after`` from the server
    raises it to at least that many seconds (beyond ``cap`` if the server asked for more).
    """
    jittered = rand() * backoff_ceiling(attempt, base=base, cap=cap)
    if retry_after is None or not math.isfinite(retry_after):
        return jittered
    return max(jittered, retry_after)


def retry_tier(delay: float, tiers: Sequence[int | float]) -> int | float:
    """The shortest tier that waits at least ``delay`` seconds; the longest tier when none does.

    A delay longer than every tier gets the longest one; the caller parks the message again when it
    comes back before its time (see ``dispatcher.adapters.amqp`` ``Delivery.remaining_delay``).
    """
    if not tiers:
        raise ValueError("at least one retry tier is needed")
    ordered = sorted(tiers)
    for tier in ordered:
        if tier >= delay:
            return tier
    return ordered[-1]
