"""Kubernetes API answers and client failures, translated into bucketrun's errors (pure).

| answer | error |
|---|---|
| 429 | ``TransientError(kind="api-429", retry_after=…)``: ``Retry-After``, else ``retryAfterSeconds`` |
| 5xx | ``TransientError(kind="api-5xx")`` (a 429-style wait is honoured there too, if the server gave one) |
| 400, 422 | ``PermanentError(reason="invalid-manifest")`` with the API's message and the fields it names |
| 403 "exceeded quota" | ``TransientError(kind="api-quota")``: the ResourceQuota admits it once Jobs finish |
| 403 | ``PermanentError(reason="forbidden")`` |
| 409 not ``AlreadyExists`` | ``TransientError(kind="api-409")``: a conflict (quota admission racing) |
| 404 | ``PermanentError(reason="api-not-found")`` (e.g. the namespace does not exist) |
| other 4xx | ``PermanentError(reason="api-4xx")`` |
| connection failure | ``TransientError(kind="api-connection")`` |
| timeout | ``TransientError(kind="api-timeout")`` |

A 409 whose Status ``reason`` is ``AlreadyExists`` (``already_exists``) is not an error on create: the
caller turns it into ``CreateOutcome.EXISTS``. Every other 409 is a conflict, and treating it as "exists"
would ack an event that has no Job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import aiohttp

from dispatcher.domain.errors import BucketrunError, PermanentError, TransientError

KIND_THROTTLED: Final = "api-429"
KIND_SERVER: Final = "api-5xx"
KIND_CONNECTION: Final = "api-connection"
KIND_TIMEOUT: Final = "api-timeout"
KIND_CONFLICT: Final = "api-409"
KIND_QUOTA: Final = "api-quota"
REASON_INVALID: Final = "invalid-manifest"
REASON_FORBIDDEN: Final = "forbidden"
REASON_NOT_FOUND: Final = "api-not-found"
REASON_CLIENT: Final = "api-4xx"

_MAX_MESSAGE: Final = 2000  # an error message goes into a dead-letter header: keep it bounded
_REASON_ALREADY_EXISTS: Final = "AlreadyExists"
_QUOTA_MARK: Final = "exceeded quota"
"""The quota admission plugin's 403 message says this (``forbidden: exceeded quota: <name>, requested``)."""


def status_object(body: bytes) -> dict[str, Any]:
    """The ``Status`` object the API server sent as *body*, or ``{}`` if the body is not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def already_exists(code: int, body: bytes) -> bool:
    """True for the API's "the name is taken" answer: 409 with Status ``reason: AlreadyExists``."""
    return code == 409 and status_object(body).get("reason") == _REASON_ALREADY_EXISTS


def retry_after_seconds(
    headers: Mapping[str, str], status: Mapping[str, Any], *, now: datetime | None = None
) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or an HTTP date), else
    ``details.retryAfterSeconds`` of the Status; None when it said nothing usable."""
    header = _header(headers, "Retry-After")
    if header is not None:
        seconds = _parse_retry_after(header.strip(), now or datetime.now(UTC))
        if seconds is not None:
            return seconds
    details = status.get("details")
    if isinstance(details, Mapping):
        value = details.get("retryAfterSeconds")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return max(0.0, float(value))
    return None


def error_for_status(code: int, headers: Mapping[str, str], body: bytes, *, action: str) -> BucketrunError:
    """The bucketrun error for an API answer with HTTP status *code* (not 2xx, not ``already_exists``).

    *action* says what was attempted ("create Job ns/name"); it starts the message.
    """
    status = status_object(body)
    message = _server_message(code, status, body)
    text = f"{action}: HTTP {code} {message}"[:_MAX_MESSAGE]
    transient = _transient_kind(code, message)
    if transient is not None:
        return TransientError(text, retry_after=retry_after_seconds(headers, status), kind=transient)
    return PermanentError(text, reason=_PERMANENT_REASONS.get(code, REASON_CLIENT))


_PERMANENT_REASONS: Final = {
    400: REASON_INVALID,
    422: REASON_INVALID,
    403: REASON_FORBIDDEN,
    404: REASON_NOT_FOUND,
}


def _transient_kind(code: int, message: str) -> str | None:
    """The kind of a transient answer (a retry may succeed), or None for a permanent one."""
    if code == 429:
        return KIND_THROTTLED
    if code >= 500:
        return KIND_SERVER
    if code == 409:
        return KIND_CONFLICT
    if code == 403 and _QUOTA_MARK in message:
        return KIND_QUOTA
    return None


def error_for_exception(error: BaseException, *, action: str) -> TransientError | None:
    """The bucketrun error for a client-side failure (connection, timeout), or None if it is not one."""
    if isinstance(error, TimeoutError):  # aiohttp.ServerTimeoutError is one too
        return TransientError(f"{action}: no answer in time ({type(error).__name__})", kind=KIND_TIMEOUT)
    if isinstance(error, aiohttp.ClientError | ConnectionError):
        return TransientError(
            f"{action}: {type(error).__name__}: {error}"[:_MAX_MESSAGE], kind=KIND_CONNECTION
        )
    return None


def _server_message(code: int, status: Mapping[str, Any], body: bytes) -> str:
    message = status.get("message")
    if not isinstance(message, str) or not message:
        reason = status.get("reason")
        if isinstance(reason, str) and reason:
            return reason
        text = body[:200].decode("utf-8", "replace").strip()
        return text or "(empty body)"
    fields = _cause_fields(status)
    missing = [field for field in fields if field not in message]
    # The apiserver's message usually names every field already; add the ones it left out.
    return f"{message} (fields: {', '.join(missing)})" if missing and code in (400, 422) else message


def _cause_fields(status: Mapping[str, Any]) -> list[str]:
    details = status.get("details")
    if not isinstance(details, Mapping):
        return []
    causes = details.get("causes")
    if not isinstance(causes, list):
        return []
    return [str(cause["field"]) for cause in causes if isinstance(cause, Mapping) and cause.get("field")]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _parse_retry_after(value: str, now: datetime) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
