"""Message headers bucketrun reads and writes, and the pure rules that build them.

The broker owns ``x-death``, ``x-first-death-*``, ``x-last-death-*`` and ``x-delivery-count``; copies that
bucketrun publishes (retries, dead letters) drop them, so a copy starts its broker history afresh and
bucketrun's own ``x-bucketrun-attempt`` is the count that survives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

ATTEMPT: Final = "x-bucketrun-attempt"
"""Retries already scheduled for this event (0 or absent on first arrival)."""
RETRY_TIER: Final = "x-bucketrun-retry-tier"
"""Tier label (``"5s"``) the retry exchange routes on."""
RETRY_REASON: Final = "x-bucketrun-retry-reason"
"""Why the last retry was scheduled (a short label such as ``api-5xx``)."""
NOT_BEFORE: Final = "x-bucketrun-not-before"
"""Unix time in integer milliseconds before which a retried message should not be processed again
(an integer: AMQP tables may carry floats as 32 bits, far too coarse for a timestamp)."""
REASON: Final = "x-bucketrun-reason"
"""Why a message was dead-lettered (a short machine code)."""
ERROR: Final = "x-bucketrun-error"
"""The error text of a dead-lettered message, truncated to ``MAX_ERROR_CHARS``."""
SERVICE: Final = "x-bucketrun-service"
"""The service a dead-lettered message was meant for, when known."""
QUEUE: Final = "x-bucketrun-queue"
"""The queue a dead-lettered or retried message was consumed from."""
ORIGINAL_EXCHANGE: Final = "x-bucketrun-original-exchange"
"""The exchange the message was first published to (kept across retries)."""
ORIGINAL_ROUTING_KEY: Final = "x-bucketrun-original-routing-key"
"""The routing key the message was first published with (kept across retries)."""
RECEIVED_AT: Final = "x-bucketrun-received-at"
"""Unix time in integer milliseconds when the dispatcher took the event off the ingress queue (set on
service tasks, kept across retries: the start of ``bucketrun_received_to_created_seconds``)."""
DELIVERY_COUNT: Final = "x-delivery-count"
"""Set by quorum queues: how many times this message was delivered before."""

MAX_ERROR_CHARS: Final = 1000
"""Error texts are cut to this many characters: headers must fit in one AMQP frame."""
_BROKER_OWNED: Final = frozenset({"x-death", DELIVERY_COUNT})
_BROKER_OWNED_PREFIXES: Final = ("x-first-death-", "x-last-death-")


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tier_label(seconds: int) -> str:
    """The label of a retry tier: ``"5s"``."""
    return f"{seconds}s"


def received_headers(received_at: float) -> dict[str, Any]:
    """Headers of a service task taken off the ingress queue at *received_at* (Unix seconds)."""
    return {RECEIVED_AT: round(received_at * 1000)}


def received_at_of(headers: Mapping[str, Any]) -> float | None:
    """When the task's event was received (Unix seconds), or None when the header is absent or bad."""
    value = headers.get(RECEIVED_AT)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value / 1000


def own_copy(headers: Mapping[str, Any]) -> dict[str, Any]:
    """*headers* without the ones the broker sets (delivery count, deaths): what a copy published again
    carries."""
    return {
        name: value
        for name, value in headers.items()
        if name not in _BROKER_OWNED and not name.startswith(_BROKER_OWNED_PREFIXES)
    }


def _with_origin(copy: dict[str, Any], *, exchange: str, routing_key: str) -> dict[str, Any]:
    # The first hop is the one worth keeping: later hops are bucketrun's own retry plumbing.
    copy.setdefault(ORIGINAL_EXCHANGE, exchange)
    copy.setdefault(ORIGINAL_ROUTING_KEY, routing_key)
    return copy


def attempt_of(headers: Mapping[str, Any]) -> int:
    """The ``x-bucketrun-attempt`` count (0 when absent or unreadable)."""
    return _non_negative_int(headers.get(ATTEMPT))


def delivery_count_of(headers: Mapping[str, Any]) -> int:
    """The quorum queue's ``x-delivery-count`` (0 when absent: first delivery)."""
    return _non_negative_int(headers.get(DELIVERY_COUNT))


def not_before_of(headers: Mapping[str, Any]) -> float | None:
    """``x-bucketrun-not-before`` as Unix seconds, or None when absent or unreadable."""
    value = headers.get(NOT_BEFORE)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value / 1000


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        return 0
    try:
        number = int(value)
    except ValueError:
        return 0
    return max(number, 0)


def retry_headers(
    headers: Mapping[str, Any],
    *,
    tier_seconds: int,
    not_before: float,
    reason: str,
    queue: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """Headers of a retry copy: attempt + 1, the tier to park in, when to process it (``not_before``, Unix
    seconds), and the origin."""
    copy = _with_origin(own_copy(headers), exchange=exchange, routing_key=routing_key)
    copy[ATTEMPT] = attempt_of(headers) + 1
    copy[RETRY_TIER] = tier_label(tier_seconds)
    copy[RETRY_REASON] = truncate(reason, 200)
    copy[NOT_BEFORE] = math.ceil(not_before * 1000)
    copy[QUEUE] = queue
    return copy


def dead_letter_headers(
    headers: Mapping[str, Any],
    *,
    reason: str,
    error_text: str,
    service: str | None,
    queue: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """Headers of a dead letter: reason, truncated error, service, where it was consumed and first sent."""
    copy = _with_origin(own_copy(headers), exchange=exchange, routing_key=routing_key)
    copy.pop(RETRY_TIER, None)  # never route a dead letter back into a tier
    copy.pop(NOT_BEFORE, None)
    copy[REASON] = truncate(reason, 200)
    copy[ERROR] = truncate(error_text)
    copy[QUEUE] = queue
    if service is not None:
        copy[SERVICE] = service
    else:
        copy.pop(SERVICE, None)
    return copy
