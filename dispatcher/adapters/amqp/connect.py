"""Connecting to the broker at start-up: retried with backoff until it answers or the process stops."""

from __future__ import annotations

import asyncio

from dispatcher.adapters.amqp.client import AmqpClient
from dispatcher.runtime.retrying import StoppedError, retry_transient
from dispatcher.runtime.settings import Settings


async def connect_amqp(settings: Settings, stop: asyncio.Event) -> AmqpClient | None:
    """Connect to the broker, retrying with backoff until it answers or *stop* is set (then None)."""
    try:
        return await retry_transient(
            lambda: AmqpClient.connect(settings.amqp),
            what="broker not reachable",
            # The first retry waits up to twice the base delay, the ceiling doubling from there.
            base=2 * settings.dispatch.retry_base_delay,
            cap=30.0,
            stop=stop,
        )
    except StoppedError:
        return None
