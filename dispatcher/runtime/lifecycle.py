"""Running a piece of work until the process is asked to stop: shared by every composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def until_stopped(work: Awaitable[None], stop: asyncio.Event, *, name: str | None = None) -> bool:
    """Run *work* until it ends (True) or *stop* is set (then cancel it; False). A failure of *work*
    is re-raised, so a dying root task stops its process instead of vanishing."""
    task = asyncio.ensure_future(work)
    if name is not None:
        task.set_name(name)
    stopper = asyncio.create_task(stop.wait(), name=f"{name or 'work'}-stop")
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True


async def cancelled(task: asyncio.Task[None]) -> None:
    """Cancel a background *task* and wait for it to end (for ``AsyncExitStack.push_async_callback``)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
