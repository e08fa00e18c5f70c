"""An asynchronous invocation (OSCAR's ``POST /job/{service}``) as a service task: pure decisions, no I/O.

OSCAR hands the request body to its FaaS Supervisor as the event, and the supervisor tells two kinds
apart (faas-supervisor 1.5, ``events/__init__.py``):

- a **storage event**: a JSON object whose first record's ``eventSource`` is ``minio:s3`` or ``aws:s3``
  (MinIO's webhook posts these to ``/job`` with the service's token). The object it names is the input.
  Here the record becomes the named service's task, exactly as a replay of it would: same Job name as the
  MinIO notification of that object version, so a record the dispatcher already handled meets 409. The
  record must route to that service (its inputs, filters and events): the dispatcher presigns the input
  with its own keys, so a caller may not name any other object of the store.
- **anything else** is an opaque event. The supervisor writes it to a file of the input folder: a JSON
  body as JSON, any other body base64-decoded (a body that is neither cannot be decoded: refused here
  rather than failing in the Job). Here that content is stored as the object
  ``invocations/<service>/<request id>`` of a bucket that notifies nothing, and the task is a MinIO
  record for it, so the Job stages it in as its ``INPUT_FILE_PATH`` like any input.

Invariant: the identity of an opaque invocation's task (``identity.object_version``) depends on the
service and the request id only (no eTag, no versionId; the request id as the sequencer), so the same
request id sent twice, or a task published twice, names one Job.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Final, TypeVar

from dispatcher.domain.events import EventError, build_message, display_value, parse_message
from dispatcher.domain.identity import object_version
from dispatcher.domain.ingress import ServiceTask, parse_task
from dispatcher.domain.routing import Routable, Router

S = TypeVar("S", bound=Routable)

INVOCATIONS_FOLDER: Final = "invocations/"
"""Where opaque invocation bodies are kept: ``invocations/<service>/<request id>``."""
INVOCATION_EVENT: Final = "s3:ObjectCreated:Put"
"""The event name of an opaque invocation's record: its content was put."""
MAX_REQUEST_ID_CHARS: Final = 128
STORAGE_SOURCES: Final = frozenset({"minio:s3", "aws:s3"})
"""``eventSource`` values the supervisor reads as a storage event (Onedata's ``OneTrigger`` aside)."""
JSON_CONTENT: Final = "application/json"
"""The content type an opaque JSON body is stored with."""
BINARY_CONTENT: Final = "application/octet-stream"
"""The content type of a base64-decoded body."""
_ONEDATA_SOURCE: Final = "OneTrigger"
_REQUEST_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_REQUEST_ID_CHARS - 1}}}")
_WHITESPACE = re.compile(rb"\s+")


class InvocationError(ValueError):
    """The request cannot become a task (answered 400); the message names the offending value."""


def check_request_id(value: str) -> str:
    """``value`` when it is a safe request id: a letter or digit, then up to 127 letters, digits, ``.``,
    ``_`` or ``-`` (a UUID fits), so it is one path segment and one AMQP message id."""
    if _REQUEST_ID.fullmatch(value) is None:
        raise InvocationError(
            f"X-Request-ID {display_value(value)} is not a request id: 1 to {MAX_REQUEST_ID_CHARS} letters,"
            " digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def invocation_key(service: str, request_id: str) -> str:
    """The object key of an opaque invocation's content."""
    return f"{INVOCATIONS_FOLDER}{service}/{check_request_id(request_id)}"


def storage_source(body: bytes) -> str | None:
    """The first record's ``eventSource`` when ``body`` is an event the supervisor reads as a storage
    event (``minio:s3``, ``aws:s3``, ``OneTrigger``), else None: the body is an opaque event."""
    try:
        document = json.loads(body)
    except ValueError:  # not UTF-8 or not JSON
        return None
    records = document.get("Records") if isinstance(document, dict) else None
    first = records[0] if isinstance(records, list) and records else None
    source = first.get("eventSource") if isinstance(first, dict) else None
    return source if source in STORAGE_SOURCES or source == _ONEDATA_SOURCE else None


def input_content(body: bytes) -> bytes:
    """The input file the supervisor writes for an opaque event: a JSON body as it is, any other body
    base64-decoded (whitespace ignored, as ``echo`` and ``base64`` add line ends); ``InvocationError``
    when the body is neither."""
    try:
        json.loads(body)
    except ValueError:
        pass
    else:
        return body
    try:
        return base64.b64decode(_WHITESPACE.sub(b"", body), validate=True)
    except binascii.Error as error:
        raise InvocationError(
            f"the request body is neither JSON nor base64 ({error}); OSCAR's supervisor writes a JSON body "
            "to the input file as it is and decodes any other body from base64"
        ) from None


def invocation_task(
    service: str,
    request_id: str,
    *,
    bucket: str,
    size: int,
    content_type: str | None,
    event_time: datetime | None = None,
) -> ServiceTask:
    """The task of an opaque invocation whose content is stored at ``invocation_key`` in ``bucket``."""
    body = build_message(
        event_name=INVOCATION_EVENT,
        bucket=bucket,
        key=invocation_key(service, request_id),
        size=size,
        sequencer=request_id,
        event_time=event_time,
        content_type=content_type,
    )
    return ServiceTask(service, parse_task(body))


def storage_task(service: S, body: bytes, *, max_bytes: int, source: str | None = None) -> ServiceTask:
    """The task of a storage-event body for ``service``: its one record, which must route to it.

    ``InvocationError`` when the body does not parse as MinIO's, holds other than one record, names an
    object version that cannot be identified, or does not route to ``service`` (the reason says why).
    """
    if source == _ONEDATA_SOURCE:
        raise InvocationError("the body is a Onedata event (OneTrigger); bucketrun reads MinIO and S3 events")
    try:
        events = parse_message(body, max_bytes=max_bytes)
        if len(events) != 1:
            raise InvocationError(
                f"the body is a storage event with {len(events)} records; an invocation takes exactly one"
            )
        (event,) = events
        object_version(event)
    except EventError as error:
        raise InvocationError(f"the body is a storage event bucketrun cannot use: {error.message}") from None
    router = Router([service])
    if not router.route(event):
        why = router.explain(event)
        reason = why.message if why is not None else "it does not route"
        raise InvocationError(f"the event's object is not an input of service {service.name!r}: {reason}")
    return ServiceTask(service.name, event)


def plan_invocation(
    service: S, body: bytes, request_id: str, *, bucket: str, max_bytes: int
) -> tuple[ServiceTask, bytes | None]:
    """What ``POST /job/{service}`` does with ``body``: the task to publish, and the content to store at
    ``invocation_key`` in ``bucket`` first (None for a storage event, whose object exists already).
    ``InvocationError`` when the body can be neither."""
    source = storage_source(body)
    if source is not None:
        return storage_task(service, body, max_bytes=max_bytes, source=source), None
    content = input_content(body)
    kind = JSON_CONTENT if content is body else BINARY_CONTENT
    task = invocation_task(service.name, request_id, bucket=bucket, size=len(content), content_type=kind)
    return task, content
