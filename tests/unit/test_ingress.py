"""The ingress plan: tasks per routed service, deliberate ignores, and unroutable records."""

from __future__ import annotations

import json

import pytest

from dispatcher.domain.events import EventError, build_message, parse_message
from dispatcher.domain.ingress import batch_body, batches, parse_task, parse_tasks, plan_ingress, record_bytes
from dispatcher.domain.routing import NoRouteReason, Router
from dispatcher.fdl import load_services_text

FDL = """
functions:
  oscar:
  - c:
      name: thumbs
      image: busybox
      script: |
        cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR"
      input:
      - {storage_provider: minio, path: media/in, suffix: [.jpg]}
      output:
      - {storage_provider: minio, path: media/thumbs}
  - c:
      name: archive
      image: busybox
      script: |
        true
      input:
      - {storage_provider: minio, path: media/in}
"""


@pytest.fixture(scope="module")
def router():
    return Router(load_services_text(FDL, source="t.yaml", base_dir=None).services)


def message(
    key: str, *, bucket: str = "media", name: str = "s3:ObjectCreated:Put", sequencer: str | None = "1A"
) -> bytes:
    return build_message(event_name=name, bucket=bucket, key=key, etag="e", sequencer=sequencer)


def test_a_shared_folder_yields_one_task_per_service(router) -> None:
    body = message("in/cat.jpg")
    plan = plan_ingress(body, router)
    assert [task.service for task in plan.tasks] == ["thumbs", "archive"]
    assert plan.dead_letter_reason is None
    (event,) = parse_message(body)
    for task in plan.tasks:
        parsed = parse_task(task.body)
        assert (parsed.bucket, parsed.key, parsed.sequencer) == ("media", "in/cat.jpg", "1A")
        assert parsed.record == event.record  # EVENT keeps MinIO's original record


def test_filters_narrow_the_services(router) -> None:
    plan = plan_ingress(message("in/notes.txt"), router)
    assert [task.service for task in plan.tasks] == ["archive"]


@pytest.mark.parametrize(
    ("key", "name", "reason"),
    [
        ("in/", "s3:ObjectCreated:Put", NoRouteReason.FOLDER_MARKER),
        ("in/cat.jpg", "s3:ObjectRemoved:Delete", NoRouteReason.EVENT_NOT_HANDLED),
        ("in/cat.jpg", "s3:ObjectCreated:PutTagging", NoRouteReason.EVENT_NOT_HANDLED),
    ],
)
def test_deliberate_ignores_are_acked(router, key, name, reason) -> None:
    plan = plan_ingress(message(key, name=name), router)
    assert plan.tasks == ()
    assert [why.reason for why in plan.ignored] == [reason]
    assert plan.dead_letter_reason is None


@pytest.mark.parametrize(
    ("bucket", "key", "reason"),
    [("other", "in/cat.jpg", "unknown-bucket"), ("media", "elsewhere/cat.jpg", "folder-mismatch")],
)
def test_unroutable_records_dead_letter_the_message(router, bucket, key, reason) -> None:
    plan = plan_ingress(message(key, bucket=bucket), router)
    assert plan.tasks == ()
    assert plan.dead_letter_reason == reason


def test_routable_records_still_yield_tasks_next_to_an_unroutable_one(router) -> None:
    good = parse_message(message("in/a.jpg"))[0].record
    bad = parse_message(message("x/b.jpg", bucket="other"))[0].record
    body = json.dumps({"Records": [good, bad]}).encode()
    plan = plan_ingress(body, router)
    assert [task.service for task in plan.tasks] == ["thumbs", "archive"]
    assert plan.dead_letter_reason == "unknown-bucket"


def test_an_unidentifiable_version_is_refused_before_any_task(router) -> None:
    with pytest.raises(EventError) as refused:
        plan_ingress(message("in/a.jpg", sequencer=None), router)
    assert refused.value.reason == "no-version"


def test_task_bodies_hold_exactly_one_record(router) -> None:
    body = json.dumps({"Records": [parse_message(message("in/a.jpg"))[0].record] * 2}).encode()
    with pytest.raises(EventError, match="exactly one record"):
        parse_task(body)


def test_a_batch_is_one_minio_document_whose_records_come_back_in_order(router) -> None:
    events = [parse_message(message(f"in/cat-{index}.jpg", sequencer=f"{index}A"))[0] for index in range(3)]
    body = batch_body(events, [record_bytes(event) for event in events])
    assert [event.record for event in parse_tasks(body)] == [event.record for event in events]
    assert set(json.loads(body)) == {"Records"}


def test_a_batch_of_one_is_the_single_task_body(router) -> None:
    (task, _) = plan_ingress(message("in/cat.jpg"), router).tasks
    assert batch_body([task.event], [record_bytes(task.event)]) == task.body
    assert parse_tasks(task.body) == (task.event,)


@pytest.mark.parametrize(
    ("sizes", "max_events", "max_bytes", "cuts"),
    [
        ([10] * 5, 2, 1 << 20, [(0, 2), (2, 4), (4, 5)]),
        ([10] * 5, 64, 1 << 20, [(0, 5)]),
        # envelope 14 bytes + each record and its comma: 14 + 11 + 11 = 36 fits, a third does not
        ([10, 10, 10], 64, 36, [(0, 2), (2, 3)]),
        ([10, 10, 10], 64, 35, [(0, 1), (1, 2), (2, 3)]),
        ([100, 10, 10], 64, 50, [(0, 1), (1, 3)]),  # larger than the limit: alone, never dropped
        ([], 64, 1 << 20, []),
    ],
)
def test_batches_cut_in_order_by_count_and_by_bytes(sizes, max_events, max_bytes, cuts) -> None:
    got = batches(sizes, max_events=max_events, max_bytes=max_bytes)
    assert [(cut.start, cut.stop) for cut in got] == cuts


def test_a_task_body_is_minios_single_record_envelope_byte_for_byte(router) -> None:
    (task, _) = plan_ingress(message("in/été €.jpg"), router).tasks
    expected = json.dumps(task.event.envelope(), ensure_ascii=False, separators=(",", ":")).encode()
    assert task.body == expected
