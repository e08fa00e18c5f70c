"""all_or_none: results in order; one failure cancels the rest and is raised as is."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.domain.errors import TransientError
from dispatcher.runtime.concurrency import InHand, all_or_none, both


async def test_results_come_back_in_order_while_the_awaitables_overlap() -> None:
    running = 0
    most = 0

    async def value(number: int, delay: float) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(delay)
        running -= 1
        return number

    assert await all_or_none(value(n, 0.03 - n * 0.01) for n in range(3)) == [0, 1, 2]
    assert most == 3
    assert await all_or_none([]) == []


async def test_a_failure_cancels_the_others_and_is_raised_unwrapped() -> None:
    slow_cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise

    async def failing() -> None:
        await asyncio.sleep(0)
        raise TransientError("503 from the API", kind="api-5xx")

    with pytest.raises(TransientError, match="503 from the API"):
        await asyncio.wait_for(all_or_none([slow(), failing()]), 5)
    assert slow_cancelled.is_set()


async def test_cancelling_the_caller_cancels_every_awaitable() -> None:
    started = asyncio.Event()
    cancelled: list[int] = []

    async def forever(number: int) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(number)
            raise

    outer = asyncio.create_task(all_or_none(forever(n) for n in range(2)))
    await asyncio.wait_for(started.wait(), 5)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert sorted(cancelled) == [0, 1]


async def test_both_returns_a_typed_pair() -> None:
    async def number() -> int:
        return 7

    async def text() -> str:
        return "seven"

    assert await both(number(), text()) == (7, "seven")


async def test_work_in_hand_outlives_its_callers_cancellation_and_drain_waits_for_it() -> None:
    in_hand = InHand()
    release, done = asyncio.Event(), []

    async def unit() -> str:
        await release.wait()
        done.append("finished")
        return "ok"

    caller = asyncio.create_task(in_hand.run(unit(), name="unit"))
    await asyncio.sleep(0)  # the unit starts
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == []  # the caller is gone; the unit is still in hand
    release.set()
    assert await in_hand.drain(5.0)
    assert done == ["finished"]


async def test_drain_cancels_what_is_late() -> None:
    in_hand = InHand()
    caller = asyncio.create_task(in_hand.run(asyncio.sleep(60), name="slow"))
    await asyncio.sleep(0)
    assert not await in_hand.drain(0.01)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await in_hand.drain(0.01)  # nothing left in hand
