"""MinIO bucket notifications, as they arrive in an AMQP message body, parsed into ``ObjectEvent``s.

Shapes accepted (all seen in real MinIO output, see ../shared/fixtures/minio-events):

- the current envelope ``{"EventName", "Key", "Records": [record]}`` (AMQP, webhook, Kafka, NSQ, ... targets);
- the legacy envelope ``{"EventType", "Key", "Records"}`` (2016-2017 NATS);
- record-only ``{"Records": [...]}``, possibly with logrus ``level``/``msg``/``time`` fields (2016 AMQP,
  Redis/Elasticsearch/PostgreSQL namespace targets, ListenBucketNotification);
- a bare record object (how some namespace targets and their readers store one record).

The records are authoritative: envelope fields (``EventName``, ``EventType``, ``Key``, logrus fields) are
redundant copies of record fields and are ignored.

A message is all-or-nothing: if any record is refused, the whole message is refused with that record's
reason. A broker message can only be acked or dead-lettered as a whole, so processing the good records and
dead-lettering the message would run their jobs again when the dead letter is replayed; refusing everything
keeps the dead letter a faithful, replayable copy of what was not processed. (MinIO itself always sends one
record per message; several records only come from hand-made or foreign publishers.)

Parsing is pure and never raises anything but ``EventError`` for any input bytes.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NoReturn
from urllib.parse import quote_plus, unquote_to_bytes

MAX_KEY_BYTES: Final = 1024
"""Longest object key in UTF-8 bytes, as S3 and MinIO enforce it."""

MAX_FIELD_CHARS: Final = 1024
"""Longest bucket name, eTag, versionId, sequencer or event name accepted (real ones are < 100)."""

MAX_RECORD_DEPTH: Final = 32
"""Deepest nesting accepted inside ``Records``; MinIO's records nest 5 levels deep."""

_DISPLAY_CHARS: Final = 80
_REPR = reprlib.Repr()  # bounded work and output even for huge or deeply nested hostile values
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 3
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_METADATA_ACTIONS: Final = frozenset({"PutRetention", "PutLegalHold", "PutTagging", "DeleteTagging"})


class EventErrorReason(StrEnum):
    """Why a message was refused; short machine codes used as dead-letter reasons and metric labels."""

    TOO_LARGE = "too-large"
    NOT_UTF8 = "not-utf8"
    NOT_JSON = "not-json"
    TOO_DEEP = "too-deep"
    NOT_AN_OBJECT_EVENT = "not-an-object-event"
    TOO_MANY_RECORDS = "too-many-records"
    BAD_RECORD = "bad-record"
    NO_VERSION = "no-version"


class EventError(ValueError):
    """A message that can never be processed (permanent): it is dead-lettered with ``reason``.

    ``str(error)`` names the offending value, truncated for display.
    """

    def __init__(self, reason: EventErrorReason, message: str) -> None:
        """Create the error from a reason code and a human-readable message."""
        super().__init__(message)
        self.reason: EventErrorReason = reason
        self.message: str = message

    def __reduce__(self) -> tuple[type[EventError], tuple[EventErrorReason, str]]:
        """Pickle with both constructor arguments (the default would pass only the message)."""
        return (type(self), (self.reason, self.message))


class EventKind(StrEnum):
    """What happened to the object, from the MinIO event name's category."""

    CREATED = "created"
    """New content: Put, Post, Copy, CompleteMultipartUpload."""
    METADATA = "metadata"
    """MinIO files PutTagging, DeleteTagging, PutRetention and PutLegalHold under ObjectCreated, but the
    content is unchanged."""
    REMOVED = "removed"
    ACCESSED = "accessed"
    REPLICATION = "replication"
    RESTORE = "restore"
    TRANSITION = "transition"
    SCANNER = "scanner"
    OTHER = "other"


_KIND_BY_CATEGORY: Final[Mapping[str, EventKind]] = {
    "ObjectCreated": EventKind.CREATED,
    "ObjectRemoved": EventKind.REMOVED,
    "ObjectAccessed": EventKind.ACCESSED,
    "Replication": EventKind.REPLICATION,
    "ObjectRestore": EventKind.RESTORE,
    "ObjectTransition": EventKind.TRANSITION,
    "Scanner": EventKind.SCANNER,
}


def event_kind(event_name: str) -> EventKind:
    """Classify a MinIO event name such as ``s3:ObjectCreated:Put``; unknown names are ``OTHER``."""
    prefix, _, rest = event_name.partition(":")
    category, _, action = rest.partition(":")
    if prefix != "s3":
        return EventKind.OTHER
    kind = _KIND_BY_CATEGORY.get(category, EventKind.OTHER)
    if kind is EventKind.CREATED and action in _METADATA_ACTIONS:
        return EventKind.METADATA
    return kind


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One record of a MinIO notification: what happened to which object version.

    ``key`` is the decoded object key. ``record`` is the original record (treat it as read-only); the
    job's ``EVENT`` variable is built from it with ``envelope()``.
    """

    event_name: str
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_time: datetime | None = None
    user_metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    content_type: str | None = None
    record: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @property
    def kind(self) -> EventKind:
        """The event's category (created, removed, metadata, ...)."""
        return event_kind(self.event_name)

    @property
    def is_folder_marker(self) -> bool:
        """True for the empty key and keys ending in ``/``: the "folders" consoles create, never files."""
        return self.key == "" or self.key.endswith("/")

    def envelope(self) -> dict[str, Any]:
        """This record in MinIO's current single-record envelope, as its AMQP target would send it.

        That is the shape OSCAR's FaaS Supervisor and user scripts expect in ``EVENT``.
        """
        return {"EventName": self.event_name, "Key": f"{self.bucket}/{self.key}", "Records": [self.record]}


def parse_message(
    body: bytes, *, max_bytes: int = 1 << 20, max_records: int = 1000
) -> tuple[ObjectEvent, ...]:
    """Parse an AMQP message body holding a MinIO notification into its events, in record order.

    Raises ``EventError`` (and nothing else) when the body is larger than ``max_bytes``, not UTF-8, not
    strict JSON, nested too deep, not an object event, has more than ``max_records`` records, or when any
    record is malformed (then the whole message is refused, see the module docstring).
    """
    if len(body) > max_bytes:
        raise EventError(
            EventErrorReason.TOO_LARGE, f"message body is {len(body)} bytes, limit is {max_bytes}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = body[error.start : error.start + 8]
        raise EventError(
            EventErrorReason.NOT_UTF8, f"message body is not UTF-8: byte {error.start} starts {bad!r}"
        ) from error
    try:
        document = json.loads(text, parse_constant=_refuse_json_constant)
    except RecursionError as error:
        raise EventError(EventErrorReason.TOO_DEEP, "message body nests JSON too deep to parse") from error
    except ValueError as error:
        # JSONDecodeError, NaN/Infinity refused above, and integers beyond Python's digit limit.
        raise EventError(
            EventErrorReason.NOT_JSON, f"message body is not JSON: {_show_text(str(error))}"
        ) from error
    records = _records_of(document, max_records)
    _check_tree(records)
    return tuple(_parse_record(record, index, len(records)) for index, record in enumerate(records))


def decode_key(escaped: str) -> str:
    """Decode ``s3.object.key`` the way MinIO encoded it: Go's ``url.QueryEscape`` (``+`` is a space).

    Evidence (minio/minio): ``cmd/event-notification.go`` ``eventArgs.ToEvent(escape)`` sets
    ``Key: url.QueryEscape(args.Object.Name)`` for every notification target (``Send`` calls
    ``ToEvent(true)``), and ``internal/event/target/amqp.go`` ``send`` rebuilds the envelope ``Key`` as
    ``bucket + "/" + url.QueryUnescape(record key)``. The 2024 webhook fixture agrees: object
    ``Tile_+002_+002.mtl`` arrives as ``Tile_%2B002_%2B002.mtl`` and ``/`` arrives as ``%2F``. So the
    inverse is ``QueryUnescape`` = Python's ``unquote_plus``, not ``unquote`` (which would keep ``+``).
    Like Go, a malformed ``%`` escape is an error rather than being kept literally; unlike Python's
    default, bytes that do not form UTF-8 are an error rather than being replaced.

    Only ListenBucketNotification (``ToEvent(false)``) sends keys unescaped; bucketrun never consumes it.
    """
    if "%" not in escaped and "+" not in escaped:
        return escaped
    if _BAD_PERCENT.search(escaped):
        raise EventError(
            EventErrorReason.BAD_RECORD, f"object key {display_value(escaped)} has a malformed '%' escape"
        )
    try:
        return unquote_to_bytes(escaped.replace("+", " ")).decode("utf-8")
    except UnicodeError as error:
        raise EventError(
            EventErrorReason.BAD_RECORD, f"object key {display_value(escaped)} does not decode to UTF-8"
        ) from error


def escape_key(key: str) -> str:
    """Encode an object key as MinIO puts it in ``s3.object.key``: Go's ``url.QueryEscape``.

    The inverse of ``decode_key``. Python's ``quote_plus`` with no safe characters keeps exactly Go's
    unreserved set (letters, digits, ``-_.~``) and turns spaces into ``+`` as Go does.
    """
    return quote_plus(key, safe="")


def build_message(
    *,
    event_name: str,
    bucket: str,
    key: str,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
    event_time: datetime | None = None,
    content_type: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> bytes:
    """A message body in MinIO's current envelope, for publishers that emulate MinIO (poller, tests).

    Absent values are omitted as MinIO's ``omitempty`` JSON fields are; ``parse_message`` inverts it. A
    naive ``event_time`` is taken as UTC; the default is now.
    """
    stamp = event_time or datetime.now(UTC)
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    obj: dict[str, Any] = {"key": escape_key(key)}
    optional = {
        "size": size,
        "eTag": etag,
        "contentType": content_type,
        "userMetadata": dict(user_metadata) if user_metadata else None,
        "versionId": version_id,
        "sequencer": sequencer,
    }
    obj.update({name: value for name, value in optional.items() if value is not None})
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
        "eventName": event_name,
        "userIdentity": {"principalId": ""},
        "requestParameters": {},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": ""}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
        "source": {"host": "", "port": "", "userAgent": ""},
    }
    envelope = {"EventName": event_name, "Key": f"{bucket}/{key}", "Records": [record]}
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


def display_value(value: Any) -> str:
    """``repr`` of a value, bounded and truncated: how error messages and logs name an offending value."""
    return _show_text(_REPR.repr(value))


def _show_text(text: str) -> str:
    return text if len(text) <= _DISPLAY_CHARS else text[: _DISPLAY_CHARS - 3] + "..."


def _records_of(document: Any, max_records: int) -> list[Any]:
    """The records of any accepted message shape, or a refusal naming what the document is instead."""
    if isinstance(document, dict):
        if "Records" in document:
            records = document["Records"]
            if not isinstance(records, list):
                raise EventError(
                    EventErrorReason.BAD_RECORD, f"'Records' is {_json_type(records)}, not an array"
                )
            if not records:
                raise EventError(EventErrorReason.NOT_AN_OBJECT_EVENT, "'Records' is empty")
            if len(records) > max_records:
                raise EventError(
                    EventErrorReason.TOO_MANY_RECORDS,
                    f"message has {len(records)} records, limit is {max_records}",
                )
            return records
        if "eventName" in document and "s3" in document:
            return [document]
        keys = display_value(sorted(str(name) for name in document)[:10])
        raise EventError(
            EventErrorReason.NOT_AN_OBJECT_EVENT,
            f"JSON object with keys {keys} has neither 'Records' nor a record's 'eventName' and 's3'",
        )
    raise EventError(
        EventErrorReason.NOT_AN_OBJECT_EVENT, f"message holds {_json_type(document)}, not an object event"
    )


def _check_tree(records: list[Any]) -> None:
    """Refuse records nested deeper than MAX_RECORD_DEPTH or holding strings that are not valid Unicode.

    Iterative on purpose: a recursive walk is what hostile nesting attacks. Lone surrogates (JSON
    ``"\\ud800"``) are refused because they cannot be encoded to UTF-8 for the job's environment.
    """
    stack: list[tuple[Any, int]] = [(records, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_RECORD_DEPTH:
            raise EventError(EventErrorReason.TOO_DEEP, f"records nest deeper than {MAX_RECORD_DEPTH} levels")
        if isinstance(value, dict):
            for name, item in value.items():
                _check_text(name)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise EventError(
            EventErrorReason.BAD_RECORD,
            f"string {display_value(text)} holds a lone surrogate (not Unicode text)",
        ) from error


def _parse_record(record: Any, index: int, count: int) -> ObjectEvent:
    where = f"record {index + 1} of {count}"
    if not isinstance(record, dict):
        raise EventError(EventErrorReason.BAD_RECORD, f"{where} is {_json_type(record)}, not an object")
    event_name = _required_text(record, "eventName", where)
    s3 = _required_object(record, "s3", where)
    bucket_info = _required_object(s3, "bucket", f"{where} s3")
    bucket = _required_text(bucket_info, "name", f"{where} s3.bucket")
    if "/" in bucket or not bucket.isprintable():
        raise EventError(
            EventErrorReason.BAD_RECORD, f"{where}: bucket name {display_value(bucket)} is not a bucket name"
        )
    obj = _required_object(s3, "object", f"{where} s3")
    escaped_key = obj.get("key")
    if not isinstance(escaped_key, str):
        raise EventError(
            EventErrorReason.BAD_RECORD, f"{where}: s3.object.key is {_json_type(escaped_key)}, not a string"
        )
    try:
        key = decode_key(escaped_key)
    except EventError as error:
        raise EventError(error.reason, f"{where}: {error.message}") from None
    problem = _key_problem(key)
    if problem:
        raise EventError(EventErrorReason.BAD_RECORD, f"{where}: object key {display_value(key)} {problem}")
    size = obj.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise EventError(
            EventErrorReason.BAD_RECORD, f"{where}: s3.object.size {display_value(size)} is not a byte count"
        )
    return ObjectEvent(
        event_name=event_name,
        bucket=bucket,
        key=key,
        size=size,
        etag=_optional_text(obj, "eTag", where),
        version_id=_optional_text(obj, "versionId", where),
        sequencer=_optional_text(obj, "sequencer", where),
        event_time=_event_time(record.get("eventTime")),
        user_metadata=_user_metadata(obj),
        content_type=_informational_text(obj.get("contentType")),
        record=record,
    )


def _key_problem(key: str) -> str | None:
    """Why a decoded key cannot be a MinIO object key, or None when it can.

    These are MinIO's own upload checks (``IsValidObjectPrefix``/``checkObjectNameForLengthAndSlash``)
    that matter downstream: NUL cannot pass through environment variables, argv or paths, and a leading
    ``/`` or a ``.``/``..`` segment would turn a key into a path outside the job's input directory.
    """
    if "\x00" in key:
        return "contains a NUL byte"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "starts with '/'"
    if any(segment.strip() in {".", ".."} for segment in key.split("/")):
        return "has a '.' or '..' path segment"
    return None


def _required_object(parent: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise EventError(
            EventErrorReason.BAD_RECORD, f"{where}: '{name}' is {_json_type(value)}, not an object"
        )
    return value


def _required_text(parent: Mapping[str, Any], name: str, where: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise EventError(
            EventErrorReason.BAD_RECORD,
            f"{where}: '{name}' is {display_value(value)}, not a non-empty string",
        )
    if len(value) > MAX_FIELD_CHARS:
        raise EventError(
            EventErrorReason.BAD_RECORD,
            f"{where}: '{name}' {display_value(value)} is over {MAX_FIELD_CHARS} chars",
        )
    return value


def _optional_text(parent: Mapping[str, Any], name: str, where: str) -> str | None:
    """A field that feeds job identity: absent/empty is None, any other non-string is refused."""
    value = parent.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS or not value.isprintable():
        raise EventError(
            EventErrorReason.BAD_RECORD,
            f"{where}: s3.object.{name} {display_value(value)} is not a valid string",
        )
    return value


def _informational_text(value: Any) -> str | None:
    """Fields nothing decides on are best-effort: a wrong type is dropped (it stays in ``record``)."""
    return value if isinstance(value, str) and value else None


def _event_time(value: Any) -> datetime | None:
    """``eventTime`` as an aware UTC datetime, or None when absent or unparseable.

    Best-effort because real MinIO documentation samples carry unparseable stamps (en dashes in the 2016
    AMQP sample); the original string always stays in ``record`` for ``EVENT``.
    """
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _user_metadata(obj: Mapping[str, Any]) -> Mapping[str, str]:
    # Until 2017 MinIO called the field "userDefined"; string entries only, like Go's map[string]string.
    raw = obj.get("userMetadata", obj.get("userDefined"))
    if not isinstance(raw, dict):
        return MappingProxyType({})
    return MappingProxyType({name: value for name, value in raw.items() if isinstance(value, str)})


def _refuse_json_constant(constant: str) -> NoReturn:
    # NaN and Infinity are not JSON; accepting them would put invalid JSON into EVENT.
    raise ValueError(f"{constant} is not a JSON value")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
