"""HTTP transfers through presigned grants (stdlib ``urllib``), with bounded retries and backoff.

A presigned GET, PUT or POST needs no SDK and no credentials: the grant is the URL (and form fields). Errors
are split the way a retry loop needs them: ``TransientTransferError`` (connection trouble, 408, 429,
5xx, S3's SlowDown) is retried with capped exponential backoff and full jitter until a time window
closes; ``PermanentTransferError`` (404, 403, any other 4xx) is not. Messages carry the status and S3's
error code only: never the URL, and never the error body (S3 echoes the signature it rejected).
"""

from __future__ import annotations

import math
import os
import random
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import TypeVar

from job_templates.stager.multipart import FormEnvelope

_T = TypeVar("_T")

RandomSource = Callable[[], float]
"""Returns a float in [0, 1), like ``random.random``."""


def _retry_delay(retries: int, policy: RetryPolicy, retry_after: float | None, rand: RandomSource) -> float:
    """Full jitter below ``min(cap, base * 2**retries)``, raised to the server's Retry-After. (The stager
    ships alone in the image, so it keeps this one formula rather than import the dispatcher's.)"""
    ceiling = policy.cap if retries >= math.log2(policy.cap / policy.base) else policy.base * 2.0**retries
    jittered = rand() * ceiling
    return jittered if retry_after is None or not math.isfinite(retry_after) else max(jittered, retry_after)


CHUNK_BYTES = 1 << 20
INPUT_FILE_MODE = 0o666
"""The downloaded input is the script's to read (or rewrite), whatever UID the user's image runs as."""
# 4xx answers S3 gives for conditions that pass: a timeout, throttling, a busy server.
_TRANSIENT_STATUSES = frozenset({408, 429})
_TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Busy"})
_S3_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
_ERROR_BODY_BYTES = 4096


class TransferError(Exception):
    """A transfer failed; ``status`` and ``code`` say what the server answered (None if it did not)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        """An error with a message free of grants, and the server's HTTP status and S3 error code."""
        super().__init__(message)
        self.status = status
        self.code = code


class TransientTransferError(TransferError):
    """Worth trying again: the connection failed or the server was unavailable or throttling."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """As ``TransferError``, plus the server's ``Retry-After`` in seconds, when it sent one."""
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class PermanentTransferError(TransferError):
    """Trying again cannot help: the object is missing, the grant refused or expired, the request bad."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long transient failures are retried, and how far apart."""

    window: float = 60.0
    """Seconds after the first attempt in which retries may start; S3 down for less loses nothing."""
    base: float = 0.5
    """Ceiling of the first backoff delay, in seconds (doubling with each retry)."""
    cap: float = 8.0
    """Largest backoff ceiling, in seconds (a server's Retry-After may ask for more)."""
    timeout: float = 30.0
    """Socket timeout of each attempt (connect and each read), in seconds."""


def with_retries(
    attempt: Callable[[], _T],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[TransientTransferError, float], None] = lambda _error, _delay: None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rand: RandomSource = random.random,
) -> _T:
    """``attempt()``, retried on ``TransientTransferError`` while the policy's window is open.

    ``on_retry(error, delay)`` is told about each retry before its delay. The last transient error is
    raised once the next retry would start after the window; permanent errors are raised at once.
    """
    deadline = monotonic() + policy.window
    retries = 0
    while True:
        try:
            return attempt()
        except TransientTransferError as error:
            delay = _retry_delay(retries, policy, error.retry_after, rand)
            if monotonic() + delay > deadline:
                raise
            on_retry(error, delay)
            sleep(delay)
            retries += 1


def classify_http_error(status: int, code: str | None, retry_after: float | None) -> TransferError:
    """The error for an HTTP answer that is not a success (``code``: S3's error code, if any)."""
    text = f"HTTP {status}" + (f" {code}" if code else "")
    if status >= 500 or status in _TRANSIENT_STATUSES or code in _TRANSIENT_CODES:
        return TransientTransferError(text, status=status, code=code, retry_after=retry_after)
    return PermanentTransferError(text, status=status, code=code)


class TooLargeError(Exception):
    """A download went past the bytes it was allowed (named in the message); nothing was kept."""


def _check_bound(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLargeError(f"the object is larger than the {max_bytes} bytes left")


def download(url: str, destination: Path, *, timeout: float, max_bytes: int | None = None) -> int:
    """Stream ``url`` into ``destination`` (via a temporary file beside it, then rename); bytes written.

    With ``max_bytes``, a body longer than that raises ``TooLargeError`` and leaves no file.
    """
    descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".download-")
    try:
        with os.fdopen(descriptor, "wb") as sink:
            with _open(urllib.request.Request(url, method="GET"), timeout) as response:  # noqa: S310
                size = 0
                while chunk := _read(response, CHUNK_BYTES):
                    size += len(chunk)
                    _check_bound(size, max_bytes)
                    sink.write(chunk)
            os.fchmod(sink.fileno(), INPUT_FILE_MODE)
        Path(temporary).replace(destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size


def download_with_retries(
    url: str,
    destination: Path,
    policy: RetryPolicy,
    *,
    announce: Callable[[str], None],
    what: str = "download",
    max_bytes: int | None = None,
) -> int:
    """``download`` retried under ``policy``; each retry is announced as ``<what> failed (...); retrying``."""

    def retrying(error: TransientTransferError, delay: float) -> None:
        announce(f"{what} failed ({error}); retrying in {delay:.1f} s")

    return with_retries(
        lambda: download(url, destination, timeout=policy.timeout, max_bytes=max_bytes),
        policy,
        on_retry=retrying,
    )


def post_file(url: str, envelope: FormEnvelope, descriptor: int, size: int, *, timeout: float) -> int:
    """POST the form ``envelope`` with the first ``size`` bytes of ``descriptor`` as its file; the status."""
    request = urllib.request.Request(  # noqa: S310 - a presigned http(s) URL from the dispatcher
        url,
        data=_body(envelope, descriptor, size),
        method="POST",
        headers={
            "Content-Type": envelope.content_type,
            "Content-Length": str(envelope.content_length(size)),
        },
    )
    with _open(request, timeout) as response:
        _read(response, _ERROR_BODY_BYTES)
        return int(response.status)


def put_bytes(url: str, data: bytes, *, content_type: str, timeout: float) -> int:
    """PUT ``data`` to the presigned ``url``; the status."""
    request = urllib.request.Request(  # noqa: S310 - a presigned http(s) URL from the dispatcher
        url, data=data, method="PUT", headers={"Content-Type": content_type}
    )
    with _open(request, timeout) as response:
        _read(response, _ERROR_BODY_BYTES)
        return int(response.status)


def _body(envelope: FormEnvelope, descriptor: int, size: int) -> Iterator[bytes]:
    yield envelope.head
    offset = 0
    while offset < size:
        # pread: every attempt reads from the start, whatever an earlier attempt left the offset at.
        chunk = os.pread(descriptor, min(CHUNK_BYTES, size - offset), offset)
        if not chunk:
            raise PermanentTransferError(f"file shrank while it was uploaded ({offset} of {size} bytes)")
        yield chunk
        offset += len(chunk)
    yield envelope.tail


def _open(request: urllib.request.Request, timeout: float) -> HTTPResponse:
    """Send ``request``; the open response, or a ``TransferError`` that names no URL."""
    try:
        response: HTTPResponse = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as error:
        with error:
            code = _s3_code(_error_body(error))
            retry_after = _retry_after(error.headers.get("Retry-After"))
            raise classify_http_error(error.code, code, retry_after) from None
    except urllib.error.URLError as error:
        raise TransientTransferError(f"cannot reach storage: {_reason(error.reason)}") from None
    except (HTTPException, OSError) as error:
        raise TransientTransferError(f"connection to storage failed: {type(error).__name__}") from None
    return response


def _error_body(error: urllib.error.HTTPError) -> bytes:
    try:
        return error.read(_ERROR_BODY_BYTES)
    except (HTTPException, OSError):
        return b""  # the status alone decides


def _read(response: HTTPResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body; a connection lost mid-body is a transient error."""
    try:
        return response.read(limit)
    except (HTTPException, OSError) as error:
        raise TransientTransferError(f"connection to storage lost: {type(error).__name__}") from None


def _s3_code(body: bytes) -> str | None:
    found = _S3_CODE.search(body)
    return found.group(1).decode("ascii") if found else None


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from S3; backoff decides instead
    return seconds if seconds is not None and seconds >= 0 else None


def _reason(reason: object) -> str:
    # A URLError's reason is an OSError (refused, timed out, DNS) or a string; neither names the URL
    # except an "unknown url type" message, which the caller's redactor still catches.
    if isinstance(reason, OSError):
        return reason.strerror or type(reason).__name__
    return str(reason)
