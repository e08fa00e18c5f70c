"""The poller's pure decisions and its durable memory (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from dispatcher.adapters.s3.storage import ObjectInfo
from dispatcher.domain.events import EventKind, parse_message
from dispatcher.fdl import InputPath, ServiceDefinition, load_services_text
from dispatcher.poller.app import (
    EVENT_NAME,
    ListTarget,
    event_of,
    identity_of,
    list_targets,
    routing_key_of,
    sequencer_of,
)
from dispatcher.poller.seen_objects import ObjectIdentity, SeenObjects
from dispatcher.runtime.settings import AmqpSettings

FDL = """
functions:
  oscar:
  - c:
      name: a
      image: busybox
      script: "exit 0\n"
      input:
      - {storage_provider: minio, path: photos/in}
      - {storage_provider: minio, path: photos/in/deeper}
      - {storage_provider: minio, path: photos/inbox}
      output: [{storage_provider: minio, path: results/a}]
"""
# A whole-bucket input: no FDL path names one since OSCAR 4.1 (a path without a slash is a folder of the
# service's bucket), but the model holds it.
WHOLE_BUCKET = ServiceDefinition(
    name="b", image="busybox", script="exit 0\n", inputs=(InputPath(bucket="whole"),)
)
MODIFIED = datetime(2026, 11, 25, 21, 30, 1, 123456, tzinfo=UTC)


def _info(
    key: str = "in/cat.txt", *, etag: str | None = "abc", modified: datetime | None = MODIFIED
) -> ObjectInfo:
    return ObjectInfo("photos", key, 12, etag, None, "text/plain", modified)


def test_list_targets_cover_every_input_once_and_drop_nested_folders() -> None:
    services = (*load_services_text(FDL, source="t.yaml", base_dir=None).services, WHOLE_BUCKET)
    assert list_targets(services) == (
        ListTarget("photos", "in/"),
        ListTarget("photos", "inbox/"),  # not inside "in/": folders compare at path boundaries
        ListTarget("whole", ""),
    )


def test_the_sequencer_is_last_modified_in_hex_nanoseconds_and_stable() -> None:
    expected = (int(MODIFIED.replace(microsecond=0).timestamp()) * 10**9) + 123_456_000
    assert sequencer_of(MODIFIED) == f"{expected:X}"
    assert sequencer_of(MODIFIED.astimezone(timezone(timedelta(hours=2)))) == sequencer_of(MODIFIED)
    assert sequencer_of(MODIFIED + timedelta(microseconds=1)) != sequencer_of(MODIFIED)


def test_identity_skips_folder_markers_and_changes_with_a_reupload() -> None:
    assert identity_of(_info("in/sub/")) is None
    assert identity_of(_info(etag=None)) is None
    assert identity_of(_info()) == ObjectIdentity("photos", "in/cat.txt", "abc", MODIFIED.isoformat())
    assert identity_of(_info(etag="new")) != identity_of(_info())
    assert identity_of(_info(modified=MODIFIED + timedelta(seconds=1))) != identity_of(_info())


def test_the_event_parses_as_the_minio_notification_of_that_version() -> None:
    (event,) = parse_message(event_of(_info("in/a b+c.txt")))
    assert (event.event_name, event.bucket, event.key) == (EVENT_NAME, "photos", "in/a b+c.txt")
    assert (event.etag, event.size, event.sequencer) == ("abc", 12, sequencer_of(MODIFIED))
    assert event.kind is EventKind.CREATED


def test_routing_key_is_the_binding_key_unless_it_is_a_topic_pattern() -> None:
    assert routing_key_of(AmqpSettings(exchange_type="direct", routing_key="minio")) == "minio"
    assert routing_key_of(AmqpSettings(exchange_type="topic", routing_key="#")) == ""
    assert routing_key_of(AmqpSettings()) == ""


def test_seen_objects_survive_reopening_and_ignore_repeats(tmp_path) -> None:
    path = tmp_path / "state" / "seen.sqlite3"
    first, second = ObjectIdentity("b", "k", "e1", "t1"), ObjectIdentity("b", "k", "e2", "t1")
    with SeenObjects(path) as seen:
        seen.add_all([first, first])
        assert first in seen
        assert second not in seen
    with SeenObjects(path) as seen:
        assert len(seen) == 1
        assert first in seen
        seen.add_all([second])
        assert len(seen) == 2
