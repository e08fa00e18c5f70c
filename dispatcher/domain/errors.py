"""bucketrun's error hierarchy at adapter boundaries: what to do next, not which library failed.

Adapters (AMQP, storage, cluster) translate library exceptions into these, raised `from` the original.
The consumer maps them to broker actions: `TransientError` → retry later (honouring `retry_after`),
`PermanentError` → dead-letter with `reason`. "Already exists" is not an error: job creation returns it
as an outcome.
"""

from __future__ import annotations


class BucketrunError(Exception):
    """Base of bucketrun's own errors."""


class TransientError(BucketrunError):
    """May succeed if tried again later: connection loss, timeouts, HTTP 5xx and 429, S3 unavailable."""

    def __init__(self, message: str, *, retry_after: float | None = None, kind: str = "transient") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After / retryAfterSeconds), if it said."""
        self.kind = kind
        """Short, bounded label for metrics and logs (e.g. "api-5xx", "api-429", "timeout", "amqp")."""


class PermanentError(BucketrunError):
    """Will fail the same way every time: the input or the definition is wrong. Dead-letter it."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """Short machine-readable reason, e.g. "not-json", "no-route", "invalid-manifest", "api-4xx"."""


class StartupError(RuntimeError):
    """A process cannot start with these settings or definitions; the message says why."""
