"""Timestamps as bucketrun writes them: RFC 3339, UTC, whole seconds, ``Z`` (as Kubernetes writes
``metav1.Time``). The one writer for Job documents, statuses and grants; ``dispatcher.domain.jobs.api_time``
reads them back. The in-pod stager parses them with the standard library alone.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """``2026-01-02T03:04:05Z``: *moment* in UTC, whole seconds (a naive *moment* is taken as local time)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
