"""parse_message against real MinIO payloads, bucketrun's own fixtures and a hostile corpus."""

from __future__ import annotations

import ast
import json
import pickle
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.domain.events import (
    EventError,
    EventErrorReason,
    EventKind,
    ObjectEvent,
    build_message,
    decode_key,
    escape_key,
    event_kind,
    parse_message,
)

# ../shared/fixtures relative to the repository root: shared read-only material, never copied here.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "minio-events"
OWN = Path(__file__).resolve().parent / "fixtures" / "events"

PUT = "s3:ObjectCreated:Put"
MULTIPART = "s3:ObjectCreated:CompleteMultipartUpload"

# pytroll's records came from ListenBucketNotification, which MinIO does not escape (ToEvent(false));
# their keys hold no '+' or '%', so decoding leaves them as they are.
PYTROLL = [
    (PUT, "sdr/SVM13_npp_d20240408_t1006227_e1007469_b64498_c20240408102334392250_cspp_dev.h5"),
    (PUT, "sdr/SVM14_npp_d20240408_t1006227_e1007469_b64498_c20240408102334431798_cspp_dev.h5"),
    (PUT, "sdr/SVM15_npp_d20240408_t1006227_e1007469_b64498_c20240408102334471520_cspp_dev.h5"),
    (PUT, "sdr/SVM16_npp_d20240408_t1006227_e1007469_b64498_c20240408102334509150_cspp_dev.h5"),
    (MULTIPART, "sdr/GIMGO_npp_d20240408_t1006227_e1007469_b64498_c20240408102307309287_cspp_dev.h5"),
    (MULTIPART, "sdr/GITCO_npp_d20240408_t1006227_e1007469_b64498_c20240408102307123064_cspp_dev.h5"),
    (PUT, "sdr/SVI01_npp_d20240408_t1006227_e1007469_b64498_c20240408102333369886_cspp_dev.h5"),
    (PUT, "sdr/SVI02_npp_d20240408_t1006227_e1007469_b64498_c20240408102333521003_cspp_dev.h5"),
    (PUT, "sdr/SVI03_npp_d20240408_t1006227_e1007469_b64498_c20240408102333616593_cspp_dev.h5"),
    (PUT, "sdr/SVI04_npp_d20240408_t1006227_e1007469_b64498_c20240408102333718056_cspp_dev.h5"),
    (PUT, "sdr/SVI05_npp_d20240408_t1006227_e1007469_b64498_c20240408102333815418_cspp_dev.h5"),
    (MULTIPART, "sdr/GDNBO_npp_d20240408_t1006227_e1007469_b64498_c20240408102306939475_cspp_dev.h5"),
    (PUT, "sdr/SVDNB_npp_d20240408_t1006227_e1007469_b64498_c20240408102332971066_cspp_dev.h5"),
    (MULTIPART, "sdr/IVCDB_npp_d20240408_t1006227_e1007469_b64498_c20240408102333190566_cspp_dev.h5"),
]

# (bucket, decoded key, event name) of every message each shared file delivers, in delivery order.
SHARED_EXPECTED: dict[str, list[tuple[str, str, str]]] = {
    "blog-webhook-delete-envelope-2024.json": [("vd-main", "Tile_+002_+002.mtl", "s3:ObjectRemoved:Delete")],
    "blog-webhook-put-envelope-2024.json": [("vd-main", "Tile_+002_+002.mtl", PUT)],
    "enduro-redis-completemultipartupload-2019.json": [("sips", "y25.gif", MULTIPART)],
    "faas-supervisor-minio-event-docstring.pyrepr.txt": [("images", "nature-wallpaper-229.jpg", PUT)],
    "minio-docs-amqp-rabbitmq-put-2016.json": [("images", "myphoto.jpg", PUT)],
    "minio-docs-elasticsearch-search-hit-2017.json": [("images", "myphoto.jpg", PUT)],
    "minio-docs-kafka-put-envelope-2019.json": [("images", "myphoto.jpg", PUT)],
    "minio-docs-nats-put-eventtype-2016.json": [("images", "myphoto.jpg", PUT)],
    "minio-docs-nats-streaming-put-eventtype-2017.json": [("images", "myphoto.jpg", PUT)],
    "minio-docs-nsq-put-envelope-2018.json": [("images", "gopher.jpg", PUT)],
    "minio-docs-redis-namespace-hset-put-2017.txt": [("images", "myphoto.jpg", PUT)],
    "pytroll-watchers-listen-records-put-multipart-2024.py.txt": [
        ("viirs-data", key, name) for name, key in PYTROLL
    ],
    "xopera-webhook-openfaas-put-envelope-2019.json": [("anze", "hello.jpg", PUT)],
}

# Files that are documents around a payload rather than a payload: parsed as they stand, they are refused.
SHARED_AS_STORED_REFUSED = {
    "minio-docs-elasticsearch-search-hit-2017.json": EventErrorReason.NOT_AN_OBJECT_EVENT,
    "minio-docs-redis-namespace-hset-put-2017.txt": EventErrorReason.NOT_JSON,
    "pytroll-watchers-listen-records-put-multipart-2024.py.txt": EventErrorReason.NOT_JSON,
}


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"shared MinIO fixtures not available at {SHARED}")
    return path


def as_delivered(name: str) -> list[bytes]:
    """The message bodies the file's transport would have delivered to a consumer."""
    text = shared_file(name).read_text(encoding="utf-8")
    if name == "minio-docs-elasticsearch-search-hit-2017.json":
        return [json.dumps(hit["_source"]).encode() for hit in json.loads(text)["hits"]["hits"]]
    if name == "minio-docs-redis-namespace-hset-put-2017.txt":
        argv = shlex.split(text)  # MONITOR quotes each argument C-style; the HSET value is the last one
        assert argv[3:6] == ["HSET", "minio_events", "images/myphoto.jpg"]
        return [argv[-1].encode()]
    if name.endswith(".pyrepr.txt"):
        return [json.dumps(ast.literal_eval(text.strip())).encode()]
    if name.endswith(".py.txt"):
        literal = text.partition("=")[2].lstrip(" \\\n")
        return [json.dumps(message).encode() for message in ast.literal_eval(literal)]
    return [text.encode()]


def test_every_shared_fixture_has_an_expectation():
    if not SHARED.is_dir():
        pytest.skip(f"shared MinIO fixtures not available at {SHARED}")
    present = {path.name for path in SHARED.iterdir() if path.name != "SOURCES.md"}
    assert present == set(SHARED_EXPECTED)


@pytest.mark.parametrize("name", sorted(SHARED_EXPECTED))
def test_shared_fixture_parses_to_bucket_key_and_event(name):
    parsed = [
        (event.bucket, event.key, event.event_name)
        for body in as_delivered(name)
        for event in parse_message(body)
    ]
    assert parsed == SHARED_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(SHARED_EXPECTED))
def test_shared_fixture_envelope_key_agrees_with_decoded_key(name):
    # MinIO builds the envelope's Key from QueryUnescape(record key): our decoding must agree with it.
    checked = 0
    for body in as_delivered(name):
        document = json.loads(body)
        if "Key" in document:
            (event,) = parse_message(body)
            assert document["Key"] == f"{event.bucket}/{event.key}"
            assert event.envelope()["Key"] == document["Key"]
            checked += 1
    if name.startswith(("blog-", "minio-docs-kafka", "minio-docs-nsq", "xopera")):
        assert checked == 1


@pytest.mark.parametrize(("name", "reason"), sorted(SHARED_AS_STORED_REFUSED.items()))
def test_shared_fixture_documents_are_not_messages(name, reason):
    with pytest.raises(EventError) as caught:
        parse_message(shared_file(name).read_bytes())
    assert caught.value.reason == reason


def test_blog_fixture_details():
    (put,) = parse_message(as_delivered("blog-webhook-put-envelope-2024.json")[0])
    assert put.size == 210
    assert put.etag == "775ff5def9531772a2bb12853cd46fce"
    assert put.sequencer == "17A76FE05CF3469B"
    assert put.version_id is None
    assert put.content_type == "application/octet-stream"
    assert put.user_metadata == {"content-type": "application/octet-stream"}
    assert put.event_time == datetime(2024, 1, 5, 11, 26, 33, 408000, tzinfo=UTC)
    assert put.kind is EventKind.CREATED
    (delete,) = parse_message(as_delivered("blog-webhook-delete-envelope-2024.json")[0])
    assert delete.kind is EventKind.REMOVED
    assert (delete.size, delete.etag, delete.content_type) == (None, None, None)
    assert delete.sequencer == "17A76FF4843A978E"


def test_legacy_fixture_fields():
    (nats,) = parse_message(as_delivered("minio-docs-nats-streaming-put-eventtype-2017.json")[0])
    assert nats.user_metadata == {"content-type": "image/jpeg"}  # 2017's "userDefined"
    (amqp,) = parse_message(as_delivered("minio-docs-amqp-rabbitmq-put-2016.json")[0])
    assert amqp.event_time is None  # the sample's stamp has en dashes for hyphens, as published
    assert amqp.record["eventTime"] == "2016\u201309\u201308T22:34:38.226Z"
    (enduro,) = parse_message(as_delivered("enduro-redis-completemultipartupload-2019.json")[0])
    assert enduro.etag == "b0814df70de0779da2b0b3f9c676c64d-1"
    assert enduro.version_id == "1"


# Own fixtures: every field written out.
OWN_EXPECTED: dict[str, list[dict[str, Any]]] = {
    "amqp-put-space-plus-slash.json": [
        {
            "event_name": PUT,
            "bucket": "media",
            "key": "in/photos 2024/a+b (1).jpg",
            "size": 48213,
            "etag": "0e5b7b2c5e3cbd6a1d0c1a8f4e7b6c3d",
            "version_id": None,
            "sequencer": "1879D3A4C1F8E6A2",
            "event_time": datetime(2025, 9, 14, 8, 15, 2, 517000, tzinfo=UTC),
            "content_type": "image/jpeg",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        }
    ],
    "amqp-put-unicode-key.json": [
        {
            "event_name": PUT,
            "bucket": "media",
            "key": "in/données/été ☀.csv",
            "size": 1024,
            "etag": "9b2cf535f27731c974343645a3985328",
            "version_id": None,
            "sequencer": "1879D3A4D2B0C311",
            "event_time": datetime(2025, 9, 14, 8, 15, 3, 1000, tzinfo=UTC),
            "content_type": "text/csv",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        }
    ],
    "amqp-put-percent-literal.json": [
        {
            "event_name": PUT,
            "bucket": "media",
            "key": "in/100%.txt",
            "size": 3,
            "etag": "e99a18c428cb38d5f260853678922e03",
            "version_id": None,
            "sequencer": "1879D3A4E0A1B2C3",
            "event_time": datetime(2025, 9, 14, 8, 15, 4, 250000, tzinfo=UTC),
            "content_type": "text/plain",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        }
    ],
    "amqp-multipart-versioned.json": [
        {
            "event_name": MULTIPART,
            "bucket": "archive",
            "key": "scans/2025/batch-17.tar",
            "size": 268435456,
            "etag": "4a3c1f0e9d8b7a6c5b4a3928170f6e5d-32",
            "version_id": "6f4e1b2a-3c5d-4e7f-8a9b-0c1d2e3f4a5b",
            "sequencer": "1879D3B012345678",
            "event_time": datetime(2025, 9, 14, 8, 20, 11, 900000, tzinfo=UTC),
            "content_type": "application/x-tar",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        }
    ],
    "amqp-delete-marker-versioned.json": [
        {
            "event_name": "s3:ObjectRemoved:DeleteMarkerCreated",
            "bucket": "archive",
            "key": "scans/2025/batch-17.tar",
            "size": None,
            "etag": None,
            "version_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "sequencer": "1879D3C0AABBCCDD",
            "event_time": datetime(2025, 9, 14, 9, 0, tzinfo=UTC),
            "content_type": None,
            "kind": EventKind.REMOVED,
            "is_folder_marker": False,
        }
    ],
    "amqp-folder-marker.json": [
        {
            "event_name": PUT,
            "bucket": "media",
            "key": "in/new folder/",
            "size": 0,
            "etag": "d41d8cd98f00b204e9800998ecf8427e",
            "version_id": None,
            "sequencer": "1879D3A4F0000001",
            "event_time": datetime(2025, 9, 14, 8, 16, tzinfo=UTC),
            "content_type": "application/octet-stream",
            "kind": EventKind.CREATED,
            "is_folder_marker": True,
        }
    ],
    "amqp-put-tagging.json": [
        {
            "event_name": "s3:ObjectCreated:PutTagging",
            "bucket": "media",
            "key": "in/cat.png",
            "size": 5120,
            "etag": "c4ca4238a0b923820dcc509a6f75849b",
            "version_id": None,
            "sequencer": "1879D3A4C1F8E6A2",
            "event_time": datetime(2025, 9, 14, 8, 30, tzinfo=UTC),
            "content_type": "image/png",
            "kind": EventKind.METADATA,
            "is_folder_marker": False,
        }
    ],
    "namespace-bare-record.json": [
        {
            "event_name": "s3:ObjectCreated:Copy",
            "bucket": "docs",
            "key": "reports/q3.pdf",
            "size": 77321,
            "etag": "8f14e45fceea167a5a36dedd4bea2543",
            "version_id": None,
            "sequencer": "1879D3D000000042",
            "event_time": datetime(2025, 9, 14, 10, 0, tzinfo=UTC),
            "content_type": "application/pdf",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        }
    ],
    "logrus-two-records.json": [
        {
            "event_name": PUT,
            "bucket": "media",
            "key": "in/one.jpg",
            "size": 10,
            "etag": "aa",
            "version_id": None,
            "sequencer": "1879D3E000000001",
            "event_time": datetime(2025, 9, 14, 11, 0, tzinfo=UTC),
            "content_type": "image/jpeg",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        },
        {
            "event_name": "s3:ObjectCreated:Post",
            "bucket": "media",
            "key": "in/two words.jpg",
            "size": 20,
            "etag": "bb",
            "version_id": None,
            "sequencer": "1879D3E000000002",
            "event_time": datetime(2025, 9, 14, 11, 0, 1, tzinfo=UTC),
            "content_type": "image/jpeg",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        },
    ],
    "legacy-eventtype-envelope.json": [
        {
            "event_name": PUT,
            "bucket": "media",
            "key": "in/legacy name.txt",
            "size": 5,
            "etag": "5d41402abc4b2a76b9719d911017c592",
            "version_id": None,
            "sequencer": "147CCD1AE054BFD0",
            "event_time": datetime(2016, 10, 12, 13, 51, 33, tzinfo=UTC),
            "content_type": "text/plain",
            "kind": EventKind.CREATED,
            "is_folder_marker": False,
        }
    ],
}

OWN_REFUSED = {"aws-s3-test-event.json": EventErrorReason.NOT_AN_OBJECT_EVENT}


def summary(event: ObjectEvent, fields: list[str]) -> dict[str, Any]:
    return {name: getattr(event, name) for name in fields}


def test_every_own_fixture_has_an_expectation():
    present = {path.name for path in OWN.glob("*.json")}
    assert present == set(OWN_EXPECTED) | set(OWN_REFUSED)


@pytest.mark.parametrize("name", sorted(OWN_EXPECTED))
def test_own_fixture_parses_field_by_field(name):
    expected = OWN_EXPECTED[name]
    events = parse_message((OWN / name).read_bytes())
    assert [summary(event, list(want)) for event, want in zip(events, expected, strict=False)] == expected
    assert len(events) == len(expected)


@pytest.mark.parametrize("name", sorted(OWN_EXPECTED))
def test_own_fixture_envelope_keeps_the_original_record(name):
    document = json.loads((OWN / name).read_bytes())
    records = document.get("Records", [document])
    for event, record in zip(parse_message((OWN / name).read_bytes()), records, strict=True):
        assert event.record == record
        assert event.envelope() == {
            "EventName": event.event_name,
            "Key": f"{event.bucket}/{event.key}",
            "Records": [record],
        }
        if "Key" in document and len(records) == 1:
            assert document["Key"] == event.envelope()["Key"]


@pytest.mark.parametrize(("name", "reason"), sorted(OWN_REFUSED.items()))
def test_own_fixture_refused(name, reason):
    with pytest.raises(EventError) as caught:
        parse_message((OWN / name).read_bytes())
    assert caught.value.reason == reason
    assert "Event" in str(caught.value)  # names the keys it found instead


def test_user_metadata_keeps_string_entries_and_is_read_only():
    (event,) = parse_message((OWN / "amqp-multipart-versioned.json").read_bytes())
    assert event.user_metadata == {"content-type": "application/x-tar", "X-Amz-Meta-Origin": "scanner-3"}
    with pytest.raises(TypeError):
        event.user_metadata["x"] = "y"  # type: ignore[index]


# -- hostile corpus -------------------------------------------------------------------------------------


def record(**object_fields: Any) -> dict[str, Any]:
    """A minimal valid record; keyword arguments replace (or, as None, remove) s3.object fields."""
    obj: dict[str, Any] = {"key": "in%2Fa.jpg", "size": 1, "eTag": "e", "sequencer": "5EQ"}
    obj.update(object_fields)
    return {
        "eventName": PUT,
        "eventTime": "2025-01-01T00:00:00.000Z",
        "s3": {"bucket": {"name": "media"}, "object": {k: v for k, v in obj.items() if v is not None}},
    }


def message(*records: Any, **envelope: Any) -> bytes:
    return json.dumps({"Records": list(records), **envelope}).encode()


def with_record_field(name: str, value: Any) -> bytes:
    broken = record()
    broken[name] = value
    return message(broken)


def with_s3_field(path: tuple[str, ...], value: Any) -> bytes:
    broken = record()
    target = broken["s3"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return message(broken)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


R = EventErrorReason
HOSTILE: list[tuple[str, bytes, EventErrorReason, str]] = [
    ("empty body", b"", R.NOT_JSON, "not JSON"),
    ("latin-1 body", '{"k": "é"}'.encode("latin-1"), R.NOT_UTF8, "byte 7 starts b'\\xe9"),
    ("utf-16 body", json.dumps({"Records": []}).encode("utf-16"), R.NOT_UTF8, "byte 0"),
    ("utf-8 bom", b"\xef\xbb\xbf" + message(record()), R.NOT_JSON, "BOM"),
    ("truncated json", message(record())[:-5], R.NOT_JSON, "not JSON"),
    ("python literal", b"{'Records': []}", R.NOT_JSON, "not JSON"),
    ("raw control char in string", b'{"Records": [{"eventName": "a\x00b"}]}', R.NOT_JSON, "not JSON"),
    ("NaN", b'{"Records": [{"eventName": "x", "s3": {}, "size": NaN}]}', R.NOT_JSON, "NaN"),
    ("Infinity", b'{"x": -Infinity}', R.NOT_JSON, "Infinity"),
    ("huge integer", b'{"x": ' + b"9" * 5000 + b"}", R.NOT_JSON, "digits"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, R.TOO_DEEP, "too deep"),
    ("deep object nesting", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, R.TOO_DEEP, "too deep"),
    ("deep inside a record", with_record_field("responseElements", nested(40)), R.TOO_DEEP, "deeper than"),
    ("null", b"null", R.NOT_AN_OBJECT_EVENT, "null"),
    ("number", b"42", R.NOT_AN_OBJECT_EVENT, "a number"),
    ("string", b'"s3:ObjectCreated:Put"', R.NOT_AN_OBJECT_EVENT, "a string"),
    ("array of records", json.dumps([record()]).encode(), R.NOT_AN_OBJECT_EVENT, "an array"),
    ("empty object", b"{}", R.NOT_AN_OBJECT_EVENT, "[]"),
    (
        "envelope without records",
        b'{"EventName": "s3:ObjectCreated:Put", "Key": "b/k"}',
        R.NOT_AN_OBJECT_EVENT,
        "Key",
    ),
    ("empty Records", b'{"Records": []}', R.NOT_AN_OBJECT_EVENT, "empty"),
    ("Records not a list", b'{"Records": {"eventName": "x"}}', R.BAD_RECORD, "an object, not an array"),
    ("record not an object", message(1), R.BAD_RECORD, "record 1 of 1 is a number"),
    ("record is a list", message([record()]), R.BAD_RECORD, "an array, not an object"),
    ("no eventName", with_record_field("eventName", None), R.BAD_RECORD, "'eventName' is None"),
    ("empty eventName", with_record_field("eventName", ""), R.BAD_RECORD, "'eventName' is ''"),
    ("numeric eventName", with_record_field("eventName", 7), R.BAD_RECORD, "'eventName' is 7"),
    ("huge eventName", with_record_field("eventName", "x" * 5000), R.BAD_RECORD, "over 1024"),
    ("no s3", with_record_field("s3", None), R.BAD_RECORD, "'s3' is null"),
    ("s3 a string", with_record_field("s3", "media/a.jpg"), R.BAD_RECORD, "'s3' is a string"),
    ("no bucket", with_s3_field(("bucket",), None), R.BAD_RECORD, "'bucket' is null"),
    ("bucket name missing", with_s3_field(("bucket", "name"), None), R.BAD_RECORD, "'name' is None"),
    ("bucket name with slash", with_s3_field(("bucket", "name"), "media/in"), R.BAD_RECORD, "'media/in'"),
    ("bucket name with newline", with_s3_field(("bucket", "name"), "me\ndia"), R.BAD_RECORD, "'me\\ndia'"),
    ("no object", with_s3_field(("object",), None), R.BAD_RECORD, "'object' is null"),
    ("no key", message(record(key=None)), R.BAD_RECORD, "key is null"),
    ("numeric key", message(record(key=12)), R.BAD_RECORD, "key is a number"),
    ("NUL escaped in key", message(record(key="in%2Fa%00.jpg")), R.BAD_RECORD, "NUL"),
    ("NUL literal in key", message(record(key="in/a\x00.jpg")), R.BAD_RECORD, "NUL"),
    ("malformed escape", message(record(key="in%2Fa%zz.jpg")), R.BAD_RECORD, "'in%2Fa%zz.jpg'"),
    ("truncated escape", message(record(key="in%2Fa%2")), R.BAD_RECORD, "malformed '%' escape"),
    ("escape not utf-8", message(record(key="in%2F%FF.jpg")), R.BAD_RECORD, "does not decode to UTF-8"),
    ("dot-dot segment", message(record(key="in%2F..%2F..%2Fetc%2Fpasswd")), R.BAD_RECORD, "'..'"),
    ("dot segment", message(record(key="in%2F.%2Fa")), R.BAD_RECORD, "'.'"),
    ("padded dot-dot", message(record(key="in%2F+..+%2Fa")), R.BAD_RECORD, "'..'"),
    ("absolute key", message(record(key="%2Fetc%2Fpasswd")), R.BAD_RECORD, "starts with '/'"),
    ("key too long", message(record(key="a" * 1025)), R.BAD_RECORD, "longer than 1024 bytes"),
    ("key too long in bytes", message(record(key="%C3%A9" * 513)), R.BAD_RECORD, "longer than 1024 bytes"),
    ("lone surrogate in key", message(record(key="in%2F\ud800.jpg")), R.BAD_RECORD, "surrogate"),
    (
        "lone surrogate elsewhere",
        with_record_field("source", {"userAgent": "\udc00"}),
        R.BAD_RECORD,
        "surrogate",
    ),
    ("negative size", message(record(size=-1)), R.BAD_RECORD, "size -1"),
    ("string size", message(record(size="12")), R.BAD_RECORD, "size '12'"),
    ("boolean size", message(record(size=True)), R.BAD_RECORD, "size True"),
    ("fractional size", message(record(size=1.5)), R.BAD_RECORD, "size 1.5"),
    ("numeric eTag", message(record(eTag=5)), R.BAD_RECORD, "eTag 5"),
    ("eTag with newline", message(record(eTag="ab\ncd")), R.BAD_RECORD, "eTag 'ab\\ncd'"),
    ("object versionId", message(record(versionId={"id": 1})), R.BAD_RECORD, "versionId"),
    ("huge sequencer", message(record(sequencer="F" * 2000)), R.BAD_RECORD, "sequencer"),
]


@pytest.mark.parametrize(
    ("body", "reason", "fragment"), [case[1:] for case in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_body_is_refused_with_reason_naming_the_value(body, reason, fragment):
    with pytest.raises(EventError) as caught:
        parse_message(body)
    assert caught.value.reason == reason
    assert fragment in str(caught.value)
    assert len(str(caught.value)) < 400  # offending values are truncated for display


def test_one_bad_record_refuses_the_whole_message():
    body = message(record(), record(key="in%2F%00"), record())
    with pytest.raises(EventError) as caught:
        parse_message(body)
    assert caught.value.reason == EventErrorReason.BAD_RECORD
    assert "record 2 of 3" in str(caught.value)


def test_size_limit_is_checked_before_parsing():
    body = message(record())
    assert parse_message(body, max_bytes=len(body))
    with pytest.raises(EventError) as caught:
        parse_message(body, max_bytes=len(body) - 1)
    assert caught.value.reason == EventErrorReason.TOO_LARGE
    assert str(len(body)) in str(caught.value)
    huge_garbage = b"\xff" * 2_000_000  # would be not-utf8, but the size check comes first
    with pytest.raises(EventError) as caught:
        parse_message(huge_garbage)
    assert caught.value.reason == EventErrorReason.TOO_LARGE


def test_record_count_limit():
    assert len(parse_message(message(record(), record()), max_records=2)) == 2
    with pytest.raises(EventError) as caught:
        parse_message(message(record(), record(), record()), max_records=2)
    assert caught.value.reason == EventErrorReason.TOO_MANY_RECORDS
    assert "3 records" in str(caught.value)


@pytest.mark.parametrize(
    ("escaped", "key", "folder_marker"),
    [
        ("", "", True),
        ("in%2F", "in/", True),
        ("in%2Fsub+dir%2F", "in/sub dir/", True),
        ("in%2F..a", "in/..a", False),
        ("in%2F...", "in/...", False),
        ("a%2B%2Bb", "a++b", False),
        ("a++b", "a  b", False),
        ("in%2Fa%252F.jpg", "in/a%2F.jpg", False),  # decoded exactly once
        ("in/raw slash.jpg", "in/raw slash.jpg", False),  # unescaped '/' and ' ' pass through
        ("caf%C3%A9", "café", False),
        ("caf%c3%a9", "café", False),  # Go accepts lower-case hex too
        ("tab%09in%0Aname", "tab\tin\nname", False),  # odd but legal S3 keys
    ],
)
def test_accepted_keys(escaped, key, folder_marker):
    (event,) = parse_message(message(record(key=escaped)))
    assert event.key == key
    assert event.is_folder_marker is folder_marker


def test_tolerated_oddities_do_not_refuse_the_event():
    broken = record(contentType=5, userMetadata={"ok": "yes", "n": 1, "nested": {"a": "b"}})
    broken["eventTime"] = "yesterday"
    envelope = {"EventName": 5, "Key": None, "deep": nested(200)}  # envelope fields are ignored
    (event,) = parse_message(message(broken, **envelope))
    assert event.event_time is None
    assert event.content_type is None
    assert event.user_metadata == {"ok": "yes"}
    assert event.etag == "e"
    (event,) = parse_message(message(record(userMetadata=["not", "a", "map"], eTag="")))
    assert event.user_metadata == {}
    assert event.etag is None


def test_event_time_without_zone_is_utc_and_offsets_are_converted():
    naive, offset = record(), record()
    naive["eventTime"] = "2025-01-01T10:00:00"
    offset["eventTime"] = "2025-01-01T12:00:00+02:00"
    first, second = parse_message(message(naive, offset))
    assert first.event_time == second.event_time == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert first.event_time is not None
    assert first.event_time.tzinfo is UTC


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("s3:ObjectCreated:Put", EventKind.CREATED),
        ("s3:ObjectCreated:Post", EventKind.CREATED),
        ("s3:ObjectCreated:Copy", EventKind.CREATED),
        ("s3:ObjectCreated:CompleteMultipartUpload", EventKind.CREATED),
        ("s3:ObjectCreated:PutTagging", EventKind.METADATA),
        ("s3:ObjectCreated:DeleteTagging", EventKind.METADATA),
        ("s3:ObjectCreated:PutRetention", EventKind.METADATA),
        ("s3:ObjectCreated:PutLegalHold", EventKind.METADATA),
        ("s3:ObjectRemoved:Delete", EventKind.REMOVED),
        ("s3:ObjectRemoved:DeleteMarkerCreated", EventKind.REMOVED),
        ("s3:ObjectRemoved:NoOP", EventKind.REMOVED),
        ("s3:ObjectAccessed:Get", EventKind.ACCESSED),
        ("s3:Replication:OperationFailedReplication", EventKind.REPLICATION),
        ("s3:ObjectRestore:Completed", EventKind.RESTORE),
        ("s3:ObjectTransition:Complete", EventKind.TRANSITION),
        ("s3:Scanner:ManyVersions", EventKind.SCANNER),
        ("s3:LifecycleDelMarkerExpiration:Delete", EventKind.OTHER),
        ("ObjectCreated:Put", EventKind.OTHER),
        ("s3:TestEvent", EventKind.OTHER),
    ],
)
def test_event_kinds(name, kind):
    assert event_kind(name) is kind
    (event,) = parse_message(with_record_field("eventName", name))
    assert event.kind is kind


@pytest.mark.parametrize(
    ("key", "go_query_escape"),
    [
        # Expected values are Go's url.QueryEscape output (the first is in the 2024 webhook sample).
        ("Tile_+002_+002.mtl", "Tile_%2B002_%2B002.mtl"),
        ("in/photos 2024/a+b (1).jpg", "in%2Fphotos+2024%2Fa%2Bb+%281%29.jpg"),
        ("A-Z_a.z~0-9", "A-Z_a.z~0-9"),
        ("d/d7/d7b3b561fe44f31e.mp4", "d%2Fd7%2Fd7b3b561fe44f31e.mp4"),  # minio/minio issue 3556
        ("100%", "100%25"),
        ("é*?&=#", "%C3%A9%2A%3F%26%3D%23"),
    ],
)
def test_key_escaping_matches_go_query_escape(key, go_query_escape):
    assert escape_key(key) == go_query_escape
    assert decode_key(go_query_escape) == key


def test_build_message_round_trips():
    stamp = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    body = build_message(
        event_name=PUT,
        bucket="media",
        key="in/a b+c.jpg",
        size=3,
        etag="abc",
        version_id="v1",
        sequencer="18",
        event_time=stamp,
        content_type="image/jpeg",
        user_metadata={"x-amz-meta-a": "1"},
    )
    document = json.loads(body)
    assert document["Key"] == "media/in/a b+c.jpg"
    assert document["Records"][0]["s3"]["object"]["key"] == "in%2Fa+b%2Bc.jpg"
    assert document["Records"][0]["eventTime"] == "2025-03-04T05:06:07.891Z"
    (event,) = parse_message(body)
    assert (event.bucket, event.key, event.size, event.etag, event.version_id, event.sequencer) == (
        "media",
        "in/a b+c.jpg",
        3,
        "abc",
        "v1",
        "18",
    )
    assert event.event_time == stamp
    assert event.user_metadata == {"x-amz-meta-a": "1"}
    (minimal,) = parse_message(build_message(event_name="s3:ObjectRemoved:Delete", bucket="b", key="k"))
    assert (minimal.size, minimal.etag, minimal.version_id, minimal.sequencer) == (None, None, None, None)
    assert (
        "size"
        not in json.loads(build_message(event_name=PUT, bucket="b", key="k"))["Records"][0]["s3"]["object"]
    )


def test_event_error_pickles_with_reason():
    error = EventError(EventErrorReason.BAD_RECORD, "record 1 of 1: boom")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.reason, str(copy)) == (error.reason, str(error))
    assert isinstance(copy, ValueError)


def test_object_events_are_hashable_and_comparable():
    first, second = parse_message(message(record(), record()))
    assert first == second
    assert len({first, second}) == 1
    assert "record=" not in repr(first)  # the raw record stays out of log lines


# Captured from the MinIO that `make servers` builds, by tests/integration/test_minio_notifications.py
# (its AMQP target's own bodies, keys with spaces, `+`, non-ASCII, `%`, `?`, `&` and `#`).
CAPTURED = OWN / "captured"
CAPTURED_KEYS = (
    "in/a file with spaces.txt",
    "in/a+plus+sign.txt",
    "in/ünïcødé ☃.txt",
    "in/100% done.txt",
    "in/q?x=1&y=#2.txt",
)


def test_every_captured_key_has_its_payload():
    assert sorted(path.name for path in CAPTURED.glob("*.json")) == [
        f"minio-put-{index}.json" for index in range(len(CAPTURED_KEYS))
    ]


@pytest.mark.parametrize("index", range(len(CAPTURED_KEYS)))
def test_captured_minio_payload_parses_to_the_uploaded_key(index):
    body = (CAPTURED / f"minio-put-{index}.json").read_bytes()
    (record,) = json.loads(body)["Records"]
    key = CAPTURED_KEYS[index]
    assert record["s3"]["object"]["key"] != key  # MinIO escaped it (url.QueryEscape)
    (event,) = parse_message(body)
    assert summary(event, ["event_name", "bucket", "key", "size", "etag", "sequencer", "kind"]) == {
        "event_name": PUT,
        "bucket": record["s3"]["bucket"]["name"],
        "key": key,
        "size": len(f"body of {key}\n".encode()),
        "etag": record["s3"]["object"]["eTag"],
        "sequencer": record["s3"]["object"]["sequencer"],
        "kind": EventKind.CREATED,
    }
    assert event.version_id is None  # an unversioned bucket: MinIO sends no versionId
    assert event.envelope()["Key"] == json.loads(body)["Key"]  # MinIO's envelope key is unescaped
