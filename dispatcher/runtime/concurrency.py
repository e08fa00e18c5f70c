"""Awaiting several things at once, with the error handling both processes want."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


async def all_or_none(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await every one concurrently and return their results in order; if one fails or this is
    cancelled, cancel the others, wait for them, and re-raise the error as is.

    Unlike a TaskGroup, this does not wrap the error in an ExceptionGroup, so callers catch exactly
    what went wrong (a TransientError, say).
    """
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await cancel_all(tasks)
        raise


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """``all_or_none`` for two awaitables of different types: both results, as a typed pair."""
    results: list[Any] = await all_or_none([first, second])
    return results[0], results[1]


async def cancel_all(tasks: Iterable[asyncio.Future[T]]) -> None:
    """Cancel *tasks* (a no-op for finished ones) and wait until they are done."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class InHand:
    """Units of work a cancellation must not cut in half (a record, its event and its mark): each runs
    as a task of its own, shielded; ``drain`` lets those in hand finish when their caller stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, work: Coroutine[Any, Any, T], *, name: str) -> T:
        """Run *work* to its end even if the awaiting task is cancelled meanwhile; its result."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def drain(self, grace: float) -> bool:
        """Wait (at most *grace* s) for the work in hand; cancel what is late. True if none was."""
        if not self._tasks:
            return True
        _, late = await asyncio.wait(list(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        return not late
