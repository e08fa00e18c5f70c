"""Connecting to the broker at start-up: retried with backoff until it answers or the process stops."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from dispatcher.adapters.amqp.client import AmqpClient
from dispatcher.domain.backoff import backoff_delay
from dispatcher.domain.errors import TransientError
from dispatcher.runtime.settings import Settings

_log = structlog.get_logger(__name__)


async def connect_amqp(settings: Settings, stop: asyncio.Event) -> AmqpClient | None:
    """Connect to the broker, retrying with backoff until it answers or *stop* is set (then None)."""
    attempt = 0
    while not stop.is_set():
        try:
            return await AmqpClient.connect(settings.amqp)
        except TransientError as error:
            attempt += 1
            delay = backoff_delay(attempt, base=settings.dispatch.retry_base_delay, cap=30.0)
            _log.warning("broker not reachable; retrying", error=str(error), retry_in=round(delay, 1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return None
