"""retry_within: transient failures retried within a time budget, then a clear give-up; no other retries."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.runtime.retrying import OutOfTimeError, retry_within

FAST = {"base": 0.01, "cap": 0.02}


class Calls:
    """A call that fails with each of *errors* in turn, then answers *result*."""

    def __init__(self, *errors: BaseException, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


async def test_transient_failures_are_retried_until_the_call_answers() -> None:
    call = Calls(TransientError("HTTP 503"), TransientError("HTTP 500"))
    assert await retry_within(call, seconds=5, **FAST) == "ok"
    assert call.count == 3


async def test_failures_that_outlast_the_budget_end_in_out_of_time_naming_the_last_error() -> None:
    async def always_503() -> str:
        raise TransientError("read the log of ns/pod container run: HTTP 503 unavailable", kind="api-5xx")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutOfTimeError) as gave_up:
        await retry_within(always_503, seconds=0.3, **FAST)
    assert loop.time() - started < 2
    assert gave_up.value.attempts > 1
    assert "HTTP 503 unavailable" in str(gave_up.value)
    assert f"gave up after {gave_up.value.attempts} attempt(s) in 0.3 s" in str(gave_up.value)


async def test_a_call_that_never_answers_is_cut_at_the_budget() -> None:
    async def hangs() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(OutOfTimeError, match=r"^no answer \(gave up after 1 attempt\(s\) in 0.2 s\)$"):
        await asyncio.wait_for(retry_within(hangs, seconds=0.2, **FAST), 5)


async def test_a_retry_after_longer_than_the_budget_ends_it_at_the_budget() -> None:
    call = Calls(TransientError("HTTP 429", retry_after=60.0))
    with pytest.raises(OutOfTimeError, match="HTTP 429"):
        await asyncio.wait_for(retry_within(call, seconds=0.2, **FAST), 5)
    assert call.count == 1


async def test_other_errors_are_raised_at_once() -> None:
    call = Calls(PermanentError("HTTP 403 forbidden", reason="forbidden"))
    with pytest.raises(PermanentError):
        await retry_within(call, seconds=5, **FAST)
    assert call.count == 1
    own_timeout = Calls(TimeoutError("the call's own"))
    with pytest.raises(TimeoutError, match="the call's own"):
        await retry_within(own_timeout, seconds=5, **FAST)
