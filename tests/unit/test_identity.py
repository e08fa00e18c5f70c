"""Job identity: object versions and deterministic, collision-resistant, DNS-1123 Job names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dispatcher.domain.events import EventError, EventErrorReason, ObjectEvent, parse_message
from dispatcher.domain.identity import JOB_NAME_MAX_LENGTH, job_name, object_version

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
REPO = Path(__file__).resolve().parents[2]
OWN = Path(__file__).resolve().parent / "fixtures" / "events"


def event(**fields) -> ObjectEvent:
    base = {"event_name": "s3:ObjectCreated:Put", "bucket": "media", "key": "in/a.jpg"}
    return ObjectEvent(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "version"),
    [
        ({"version_id": "6f4e1b2a", "etag": "abc", "sequencer": "18"}, "6f4e1b2a:abc:18"),
        ({"version_id": "null", "etag": "abc", "sequencer": "18"}, ":abc:18"),  # AWS's unversioned id
        ({"etag": "abc", "sequencer": "18"}, ":abc:18"),
        ({"sequencer": "18"}, "::18"),  # removals carry no eTag
        ({"version_id": "6f4e1b2a"}, "6f4e1b2a::"),
        ({"version_id": "a:b", "etag": "c%d", "sequencer": "e"}, "a%3Ab:c%25d:e"),
    ],
)
def test_object_version(fields, version):
    assert object_version(event(**fields)) == version


@pytest.mark.parametrize("fields", [{}, {"etag": "abc"}, {"version_id": "null", "etag": "abc"}])
def test_object_version_refuses_events_that_cannot_be_deduplicated(fields):
    with pytest.raises(EventError) as caught:
        object_version(event(**fields))
    assert caught.value.reason == EventErrorReason.NO_VERSION
    assert "'media/in/a.jpg'" in str(caught.value)


def test_object_version_is_unambiguous_when_parts_hold_separators():
    first = event(version_id="a", etag="b:c", sequencer="d")
    second = event(version_id="a:b", etag="c", sequencer="d")
    assert object_version(first) != object_version(second)


def test_placeholder_version_id_of_old_minio_does_not_merge_uploads():
    # MinIO before bucket versioning sent versionId "1" for every object (2017-2019 samples).
    first = event(version_id="1", etag="5fc7298143efe1276d39a3466d4e255f-1", sequencer="15CFEDF8D5304D1A")
    again = event(version_id="1", etag="5fc7298143efe1276d39a3466d4e255f-1", sequencer="15CFEDF9A0000000")
    assert object_version(first) != object_version(again)


def test_redelivered_event_gets_the_same_name_and_a_reupload_another():
    body = (OWN / "amqp-put-space-plus-slash.json").read_bytes()
    (first,) = parse_message(body)
    (redelivered,) = parse_message(body)
    reupload = body.replace(b"1879D3A4C1F8E6A2", b"1879D3A4C1F8E6A3")  # same content, later mtime
    (second,) = parse_message(reupload)
    names = [job_name("thumbnails", e.bucket, e.key, object_version(e)) for e in (first, redelivered, second)]
    assert names[0] == names[1]
    assert names[0] != names[2]


def test_job_name_is_stable_across_releases():
    # Changing this value changes every Job name: in-flight events would run a second time.
    assert job_name("thumbnails", "media", "in/a.jpg", ":abc:18") == "thumbnails-w4uydssycq5gdoggluej"


def test_job_name_is_the_same_in_other_processes():
    code = (
        "from dispatcher.domain.identity import job_name; print(job_name('Thumb', 'media', 'in/ü.jpg', 'v'))"
    )
    names = set()
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
        )
        names.add(done.stdout.strip())
    assert names == {job_name("Thumb", "media", "in/ü.jpg", "v")}


@pytest.mark.parametrize(
    ("service", "prefix"),
    [
        ("thumbnails", "thumbnails-"),
        ("Thumbnails_Gen v2", "thumbnails-gen-v2-"),
        ("--edge--", "edge-"),
        ("a..b", "a-b-"),
        ("", "job-"),
        ("日本語", "job-"),
        ("x" * 100, "x" * 36 + "-"),
        ("a" * 35 + "-b", "a" * 35 + "-"),  # cut lands on a separator: no double dash
    ],
)
def test_job_name_prefix_is_the_readable_service_name(service, prefix):
    name = job_name(service, "media", "in/a.jpg", "v")
    assert name.startswith(prefix)
    assert len(name) == len(prefix) + 20
    assert DNS_1123_LABEL.fullmatch(name)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "b/c", "d", "v"), ("a/b", "c", "d", "v")),
        (("s", "b", "k", "v1"), ("s", "b", "kv", "1")),
        (("s", "b", "", "v"), ("s", "", "b", "v")),
        (("svc", "b", "k", "v"), ("SVC", "b", "k", "v")),  # same readable prefix, different service
        (("s", "b", "k\x00", "v"), ("s", "b", "k", "\x00v")),
    ],
)
def test_separators_inside_values_do_not_collide(first, second):
    assert job_name(*first) != job_name(*second)


texts = st.text(alphabet=st.characters() | st.sampled_from("/:\x00-_ "), max_size=20)
parts = st.tuples(texts, texts, texts, texts)


@settings(deadline=None, max_examples=300)
@given(parts)
def test_job_name_is_always_a_short_dns_label(values):
    name = job_name(*values)
    assert DNS_1123_LABEL.fullmatch(name)
    assert len(name) <= JOB_NAME_MAX_LENGTH <= 63 - 6  # room for the pod's "-xxxxx" suffix
    assert job_name(*values) == name


@settings(deadline=None, max_examples=300)
@given(parts, parts)
def test_different_inputs_give_different_names(first, second):
    assume(first != second)
    assert job_name(*first) != job_name(*second)


@settings(deadline=None, max_examples=200)
@given(parts, st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=3), st.data())
def test_moving_characters_between_parts_changes_the_name(values, source, target, data):
    assume(source != target and values[source])
    cut = data.draw(st.integers(min_value=1, max_value=len(values[source])))
    moved = list(values)
    moved[target] = values[source][:cut] + moved[target]
    moved[source] = values[source][cut:]
    assert job_name(*values) != job_name(*moved)
