"""Kubernetes API answers and client failures, translated into bucketrun's errors (pure).

| answer | error |
|---|---|
| 429 | ``TransientError(kind="api-429", retry_after=…)``: ``Retry-After``, else ``retryAfterSeconds`` |
| 5xx | ``TransientError(kind="api-5xx")`` (a 429-style wait is honoured there too, if the server gave one) |
| 400, 422 | ``PermanentError(reason="invalid-manifest")`` with the API's message and the fields it names |
| 403 | ``PermanentError(reason="forbidden")`` |
| 404 | ``PermanentError(reason="api-not-found")`` (e.g. the namespace does not exist) |
| other 4xx | ``PermanentError(reason="api-4xx")`` |
| connection failure | ``TransientError(kind="api-connection")`` |
| timeout | ``TransientError(kind="api-timeout")`` |

409 on create is not an error at all (the caller turns it into ``CreateOutcome.EXISTS``), so it is not
handled here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import aiohttp

from dispatcher.errors import BucketrunError, PermanentError, TransientError

KIND_THROTTLED: Final = "api-429"
KIND_SERVER: Final = "api-5xx"
KIND_CONNECTION: Final = "api-connection"
KIND_TIMEOUT: Final = "api-timeout"
REASON_INVALID: Final = "invalid-manifest"
REASON_FORBIDDEN: Final = "forbidden"
REASON_NOT_FOUND: Final = "api-not-found"
REASON_CLIENT: Final = "api-4xx"

_MAX_MESSAGE: Final = 2000  # an error message goes into a dead-letter header: keep it bounded


def status_object(body: bytes) -> dict[str, Any]:
    """The ``Status`` object the API server sent as *body*, or ``{}`` if the body is not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


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
    """The bucketrun error for an API answer with HTTP status *code* (not 2xx, not a create's 409).

    *action* says what was attempted ("create Job ns/name"); it starts the message.
    """
    status = status_object(body)
    message = _server_message(code, status, body)
    text = f"{action}: HTTP {code} {message}"[:_MAX_MESSAGE]
    if code == 429:
        return TransientError(text, retry_after=retry_after_seconds(headers, status), kind=KIND_THROTTLED)
    if code >= 500:
        return TransientError(text, retry_after=retry_after_seconds(headers, status), kind=KIND_SERVER)
    if code in (400, 422):
        return PermanentError(text, reason=REASON_INVALID)
    if code == 403:
        return PermanentError(text, reason=REASON_FORBIDDEN)
    if code == 404:
        return PermanentError(text, reason=REASON_NOT_FOUND)
    return PermanentError(text, reason=REASON_CLIENT)


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
