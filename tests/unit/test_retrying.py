"""retry_transient: transient failures retried (within a budget, until a stop), one log line each; no
other retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog

from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.runtime.retrying import OutOfTimeError, StoppedError, retry_transient

FAST: dict[str, Any] = {"what": "calling", "base": 0.01, "cap": 0.02}


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
    assert await retry_transient(call, seconds=5, **FAST) == "ok"
    assert call.count == 3


async def test_failures_that_outlast_the_budget_end_in_out_of_time_naming_the_last_error() -> None:
    async def always_503() -> str:
        raise TransientError("read the log of ns/pod container run: HTTP 503 unavailable", kind="api-5xx")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutOfTimeError) as gave_up:
        await retry_transient(always_503, seconds=0.3, **FAST)
    assert loop.time() - started < 2
    assert gave_up.value.attempts > 1
    assert "HTTP 503 unavailable" in str(gave_up.value)
    assert f"gave up after {gave_up.value.attempts} attempt(s) in 0.3 s" in str(gave_up.value)


async def test_a_call_that_never_answers_is_cut_at_the_budget() -> None:
    async def hangs() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(OutOfTimeError, match=r"^no answer \(gave up after 1 attempt\(s\) in 0.2 s\)$"):
        await asyncio.wait_for(retry_transient(hangs, seconds=0.2, **FAST), 5)


async def test_a_retry_after_longer_than_the_budget_ends_it_at_the_budget() -> None:
    call = Calls(TransientError("HTTP 429", retry_after=60.0))
    with pytest.raises(OutOfTimeError, match="HTTP 429"):
        await asyncio.wait_for(retry_transient(call, seconds=0.2, **FAST), 5)
    assert call.count == 1


async def test_other_errors_are_raised_at_once() -> None:
    call = Calls(PermanentError("HTTP 403 forbidden", reason="forbidden"))
    with pytest.raises(PermanentError):
        await retry_transient(call, seconds=5, **FAST)
    assert call.count == 1
    own_timeout = Calls(TimeoutError("the call's own"))
    with pytest.raises(TimeoutError, match="the call's own"):
        await retry_transient(own_timeout, seconds=5, **FAST)


async def test_without_a_budget_it_retries_until_the_call_answers_logging_each_retry() -> None:
    call = Calls(*(TransientError(f"HTTP 503 #{n}") for n in range(4)))
    with structlog.testing.capture_logs() as logged:
        assert await retry_transient(call, job="j1", **FAST) == "ok"
    assert call.count == 5
    retries = [line for line in logged if line["event"] == "calling; retrying"]
    assert [line["attempt"] for line in retries] == [1, 2, 3, 4]
    assert [line["error"] for line in retries] == [f"HTTP 503 #{n}" for n in range(4)]
    assert all(line["job"] == "j1" and line["log_level"] == "warning" for line in retries)


async def test_the_delay_is_the_capped_jittered_backoff_raised_to_retry_after() -> None:
    call = Calls(
        TransientError("a"), TransientError("b"), TransientError("c", retry_after=0.05), TransientError("d")
    )
    with structlog.testing.capture_logs() as logged:
        await retry_transient(call, what="calling", base=0.01, cap=0.02, rand=lambda: 0.999)
    # Ceilings 0.01, 0.02 (the cap), then Retry-After beyond the cap, then the cap again.
    assert [line["delay"] for line in logged] == [0.01, 0.02, 0.05, 0.02]


async def test_a_stop_set_from_the_start_makes_no_call() -> None:
    stop = asyncio.Event()
    stop.set()
    call = Calls()
    with pytest.raises(StoppedError):
        await retry_transient(call, stop=stop, **FAST)
    assert call.count == 0


async def test_a_stop_ends_the_wait_between_tries_at_once() -> None:
    stop = asyncio.Event()

    async def always_503() -> str:
        asyncio.get_running_loop().call_later(0.05, stop.set)
        raise TransientError("HTTP 503")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoppedError) as stopped:
        await asyncio.wait_for(
            retry_transient(always_503, what="calling", base=60, cap=60, stop=stop, rand=lambda: 0.999), 5
        )
    assert loop.time() - started < 2
    assert isinstance(stopped.value.__cause__, TransientError)


async def test_with_a_stop_that_stays_unset_it_retries_until_the_call_answers() -> None:
    call = Calls(TransientError("HTTP 503"))
    assert await retry_transient(call, stop=asyncio.Event(), **FAST) == "ok"
    assert call.count == 2
