"""Property tests: parse_message raises nothing but EventError for any input, and keys survive the trip."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain.events import (
    MAX_KEY_BYTES,
    EventError,
    EventErrorReason,
    ObjectEvent,
    build_message,
    decode_key,
    escape_key,
    parse_message,
)

FUZZ = settings(deadline=None, max_examples=300)
PUT = "s3:ObjectCreated:Put"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)

VALID_RECORD: dict[str, Any] = json.loads(
    build_message(
        event_name=PUT,
        bucket="media",
        key="in/a b.jpg",
        size=10,
        etag="abc",
        version_id="v1",
        sequencer="18",
        content_type="image/jpeg",
        user_metadata={"content-type": "image/jpeg"},
    )
)["Records"][0]
RECORD_PATHS = [
    ("eventName",),
    ("eventTime",),
    ("s3",),
    ("s3", "bucket"),
    ("s3", "bucket", "name"),
    ("s3", "object"),
    ("s3", "object", "key"),
    ("s3", "object", "size"),
    ("s3", "object", "eTag"),
    ("s3", "object", "versionId"),
    ("s3", "object", "sequencer"),
    ("s3", "object", "userMetadata"),
    ("s3", "object", "contentType"),
    ("source", "userAgent"),
]

# Keys built from the characters that matter to escaping and paths, plus any UTF-8-encodable character.
key_texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("/+% .~\x00"), max_size=60)


def parse_or_refuse(body: bytes) -> tuple[ObjectEvent, ...] | EventError:
    try:
        return parse_message(body)
    except EventError as error:
        refusal = error
    assert refusal.reason in set(EventErrorReason)
    assert str(refusal)
    return refusal


def assert_sane(events: tuple[ObjectEvent, ...]) -> None:
    for event in events:
        assert isinstance(event.key, str)
        assert "\x00" not in event.key
        assert len(event.key.encode("utf-8")) <= MAX_KEY_BYTES
        assert event.bucket
        assert event.size is None or (isinstance(event.size, int) and event.size >= 0)
        json.dumps(event.envelope(), ensure_ascii=False).encode("utf-8")  # EVENT can always be rendered


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_refuse(body):
    result = parse_or_refuse(body)
    if not isinstance(result, EventError):
        assert_sane(result)


@FUZZ
@given(json_values)
def test_any_json_document_parses_or_refuses(value):
    result = parse_or_refuse(json.dumps(value).encode())
    if not isinstance(result, EventError):
        assert_sane(result)


@FUZZ
@given(st.sampled_from(RECORD_PATHS), json_values, st.booleans())
def test_a_record_with_any_field_replaced_parses_or_refuses(path, value, bare):
    record = copy.deepcopy(VALID_RECORD)
    target = record
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    document = record if bare else {"EventName": PUT, "Key": "media/x", "Records": [record]}
    result = parse_or_refuse(json.dumps(document).encode())
    if not isinstance(result, EventError):
        assert_sane(result)


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6))
def test_a_message_with_corrupted_bytes_parses_or_refuses(changes):
    body = bytearray(json.dumps({"Records": [VALID_RECORD]}).encode())
    for position, byte in changes:
        body[position % len(body)] = byte
    result = parse_or_refuse(bytes(body))
    if not isinstance(result, EventError):
        assert_sane(result)


def is_refused_key(key: str) -> bool:
    """The documented key rules, restated independently of the implementation."""
    return bool(
        "\x00" in key
        or len(key.encode("utf-8")) > MAX_KEY_BYTES
        or key.startswith("/")
        or re.search(r"(^|/)\s*\.{1,2}\s*(/|$)", key)
    )


@FUZZ
@given(key_texts)
def test_keys_survive_the_trip_through_a_minio_message(key):
    body = build_message(event_name=PUT, bucket="media", key=key, sequencer="18")
    if is_refused_key(key):
        with pytest.raises(EventError) as caught:
            parse_message(body)
        assert caught.value.reason == EventErrorReason.BAD_RECORD
    else:
        (event,) = parse_message(body)
        assert event.key == key
        assert event.is_folder_marker is (key == "" or key.endswith("/"))


@FUZZ
@given(key_texts)
def test_decode_inverts_escape(key):
    assert decode_key(escape_key(key)) == key


@FUZZ
@given(st.text(alphabet=st.sampled_from("%+/aZ09fF é\u2603"), max_size=20))
def test_decode_agrees_with_strict_unquote_plus_or_refuses(escaped):
    malformed = re.search(r"%(?![0-9A-Fa-f]{2})", escaped)
    try:
        expected: str | None = None if malformed else unquote_plus(escaped, errors="strict")
    except UnicodeDecodeError:
        expected = None
    if expected is None:
        with pytest.raises(EventError) as caught:
            decode_key(escaped)
        assert caught.value.reason == EventErrorReason.BAD_RECORD
    else:
        assert decode_key(escaped) == expected
