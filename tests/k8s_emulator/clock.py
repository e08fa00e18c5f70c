"""Time as the apiserver writes it: RFC 3339 in UTC with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

from dispatcher.domain import timestamps


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime | None = None) -> str:
    """*moment* (default: now) as `2026-01-02T03:04:05Z` — whole seconds, like metav1.Time."""
    return timestamps.rfc3339(moment or now())


def parse_rfc3339(text: str) -> datetime:
    """A timestamp written by `rfc3339` (or any ISO-8601 form with `Z` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
