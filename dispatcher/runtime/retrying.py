"""The one retry loop: a call retried after each ``TransientError`` until it answers, the time budget
(if any) runs out, or the stop event (if any) is set.

Between tries it waits a capped exponential backoff with full jitter that honours the server's
Retry-After (``dispatcher.domain.backoff``), and logs one line per retry. Any other error is raised at
once: a ``PermanentError`` will not go away by asking again.

The processes' own loops retry until the work is done, for ever if they must (an event is never lost,
a record never): they give no budget. A call that only adds to that work (a container's log in a Job
record) must not hold it up for ever: a dead node takes its kubelet along, and every read of its
pods' logs answers 5xx until those pods are deleted. Such a call gets a budget, and ``OutOfTimeError``
says why it gave up. A call a process makes while starting (connecting to the broker) gets the
process's stop event: a stop requested meanwhile ends the wait at once, with ``StoppedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from dispatcher.domain.backoff import RandomSource, backoff_delay
from dispatcher.domain.errors import BucketrunError, TransientError

T = TypeVar("T")

_log = structlog.get_logger(__name__)


class OutOfTimeError(BucketrunError):
    """Transient failures went on for the whole budget; the message names the last one."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts
        """Calls made (the last one may have been cut short by the budget)."""


class StoppedError(BucketrunError):
    """The stop event was set before the call answered."""


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    base: float,
    cap: float,
    seconds: float | None = None,
    stop: asyncio.Event | None = None,
    rand: RandomSource = random.random,
    **context: object,
) -> T:
    """``await call()``, called again after each ``TransientError`` until it answers.

    Before retry *n* (0-based) it waits ``backoff_delay(n, base=base, cap=cap, retry_after=…)`` and logs
    the warning ``"<what>; retrying"`` with the error, the delay, the attempt and *context*.

    - *seconds*: a budget from the first call on; when it runs out, a call still running is cancelled
      and ``OutOfTimeError`` names the last failure. None: no budget.
    - *stop*: checked before each call, and it cuts a wait short; once set, ``StoppedError`` (no call
      is made when it is set from the start). None: no stop.

    Other errors are raised at once (the call's own ``TimeoutError`` included).
    """
    attempts = 0
    last: TransientError | None = None
    budget = asyncio.timeout(seconds)
    try:
        async with budget:
            while stop is None or not stop.is_set():
                attempts += 1
                try:
                    return await call()
                except TransientError as error:
                    last = error
                delay = backoff_delay(
                    attempts - 1, base=base, cap=cap, retry_after=last.retry_after, rand=rand
                )
                _log.warning(
                    f"{what}; retrying", error=str(last), delay=round(delay, 2), attempt=attempts, **context
                )
                await _pause(delay, stop)
    except TimeoutError as error:
        if not budget.expired():
            raise  # the call's own TimeoutError, not the budget's
        why = str(last) if last is not None else "no answer"
        raise OutOfTimeError(
            f"{why} (gave up after {attempts} attempt(s) in {seconds:g} s)", attempts=attempts
        ) from (last or error)
    raise StoppedError(f"{what}: stopped after {attempts} attempt(s)") from last


async def _pause(delay: float, stop: asyncio.Event | None) -> None:
    """Sleep *delay* seconds, or until *stop* is set."""
    if stop is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
