"""Retrying transient failures for a bounded time, for calls whose result can be done without.

The processes' own loops retry until the work is done, for ever if they must (an event is never lost,
a record never). A call that only adds to that work (a container's log in a Job record) must not hold
it up for ever: a dead node takes its kubelet along, and every read of its pods' logs answers 5xx
until those pods are deleted. ``retry_within`` gives such a call a time budget, then says why it
gave up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dispatcher.domain.backoff import RandomSource, backoff_delay
from dispatcher.domain.errors import BucketrunError, TransientError

T = TypeVar("T")


class OutOfTimeError(BucketrunError):
    """Transient failures went on for the whole budget; the message names the last one."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts
        """Calls made (the last one may have been cut short by the budget)."""


async def retry_within(
    call: Callable[[], Awaitable[T]],
    *,
    seconds: float,
    base: float,
    cap: float,
    rand: RandomSource = random.random,
) -> T:
    """``await call()``, called again after each ``TransientError`` (capped backoff with full jitter,
    honouring Retry-After) until *seconds* have passed since the first call; then ``OutOfTimeError``.

    A call still running when the budget ends is cancelled. Other errors are raised at once.
    """
    attempts = 0
    last: TransientError | None = None
    budget = asyncio.timeout(seconds)
    try:
        async with budget:
            while True:
                attempts += 1
                try:
                    return await call()
                except TransientError as error:
                    last = error
                retry_after = last.retry_after
                await asyncio.sleep(
                    backoff_delay(attempts - 1, base=base, cap=cap, retry_after=retry_after, rand=rand)
                )
    except TimeoutError as error:
        if not budget.expired():
            raise  # the call's own TimeoutError, not the budget's
        what = str(last) if last is not None else "no answer"
        raise OutOfTimeError(
            f"{what} (gave up after {attempts} attempt(s) in {seconds:g} s)", attempts=attempts
        ) from (last or error)
