"""Hostile object keys through the dispatcher's whole pure path — parse → route → presign → render — and
through a real pod: a key is data, everywhere.

For every key (a fixed corpus and hypothesis-built ones) the message is either refused with the
documented reason (as MinIO itself refuses such keys) or becomes a Job manifest whose *shape* (every key
path and value type, ignoring string contents) equals the manifest of a plain key; whose commands are the
plain ones (the key never becomes a command argument); where the key appears verbatim only as an env
value and an annotation; and whose name is a DNS-1123 label. tests/unit/test_rendering.py checks the
renderer alone with hand-built events; this goes through the same functions the dispatcher calls.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain import constants as c
from dispatcher.domain.events import MAX_KEY_BYTES, EventError, EventErrorReason, build_message, escape_key
from dispatcher.domain.ingress import plan_ingress
from dispatcher.domain.routing import NoRouteReason
from dispatcher.executors.local.runner import LocalPodRunner, StaticPodRefs
from dispatcher.executors.local.status import pod_manifest
from dispatcher.fdl import load_services_text
from dispatcher.fdl.catalog import Catalog
from dispatcher.process.job_creation import JobCreator
from dispatcher.rendering.context import RenderSettings
from dispatcher.rendering.render import JobRenderer
from dispatcher.runtime.settings import StorageSettings
from job_templates.stager import contract
from tests.integration.test_stage import storage_for
from tests.unit.test_events_fuzz import is_refused_key

pytestmark = pytest.mark.reliability

FDL = """
functions:
  oscar:
  - c:
      name: echo-key
      image: busybox:1.36
      script: |
        printf '%s' "$STORAGE_OBJECT_KEY" > "$TMP_OUTPUT_DIR/key.txt"
        basename "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/name.txt"
        cat "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/content.txt"
      input: [{storage_provider: minio, path: BUCKET/in}]
      output: [{storage_provider: minio, path: OUTPUTS/out}]
"""
BUCKET = "photos"
PLAIN = "in/plain.txt"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SECRET_KEY = "hostile-keys-secret-never-rendered"

FRAGMENTS = [
    "../",
    "..",
    "./",
    "/",
    "//",
    "/etc/passwd",
    "\n",
    "\r\n",
    "'",
    '"',
    "\\",
    "{{ 7*7 }}",
    "{% raw %}",
    "{#",
    "$(touch /tmp/pwned)",
    "${HOME}",
    "`id`",
    "; rm -rf / #",
    "| sh",
    "&& reboot",
    "--help",
    "-rf",
    ": ",
    "- ",
    "#",
    "&a *a",
    "!!python/object:os.system",
    "%00",
    "%2F",
    "+",
    " ",
    "\t",
    "\x85",
    "\u2028",
    "\u2029",
    "\uff0f",  # fullwidth solidus
    "\u2215",  # division slash
    "\u202e",  # right-to-left override
    "\u200b",  # zero width space
    "\u200d",  # zero width joiner
    "\ufeff",  # byte order mark
    "e\u0301",  # NFD é
    "\u00e9",  # NFC é
    "\u212b",  # Angstrom sign (NFC: Å)
    "\ufb01",  # ligature fi (NFKC: fi)
    "😀",
    "写真",
]

CORPUS = [
    "in/../../etc/passwd",
    "in/./x",
    "/etc/passwd",
    "/in/x.txt",
    "../in/x.txt",
    "in/x\x00.txt",
    "in/" + "a" * (MAX_KEY_BYTES - 3),
    "in/" + "é" * ((MAX_KEY_BYTES - 3) // 2),
    "in/" + "a" * (MAX_KEY_BYTES - 2),
    "in/line1\nline2: injected\n- item",
    "in/a\"b'c\\d",
    "in/{{ config }}.txt",
    "in/{% for x in y %}{{x}}{% endfor %}",
    "in/$(touch /tmp/pwned).txt",
    "in/`touch /tmp/pwned`.txt",
    "in/x; rm -rf /",
    "in/--output=/etc/shadow",
    "in/\u202etxt.exe",
    "in/zero\u200bwidth\u200d.txt",
    "in/caf\u00e9.txt",
    "in/cafe\u0301.txt",
    "in/a\uff0fb.txt",
    "in/..\uff0f..\uff0fetc",
    "in/sub/dir/",
    "in/",
    "in/ .. /x",
    "in/...",
    "in/a..b",
    "in/\ud7ff\ue000\U0010ffff",
]

keys_in_folder = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), min_size=1, max_size=8).map(
    lambda parts: "in/" + "".join(parts)
)
any_keys = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), min_size=1, max_size=8).map("".join)


@pytest.fixture(scope="module")
def pipeline() -> tuple[Catalog, JobCreator]:
    (service,) = load_services_text(
        FDL.replace("BUCKET", BUCKET).replace("OUTPUTS", "results"), source="keys.yaml", base_dir=None
    ).services
    catalog = Catalog.of((service,))
    storage = Storage(
        StorageSettings(
            endpoint="s3.example:9000",
            access_key="AKIAHOSTILEKEYS",
            secret_key=SECRET_KEY,
            region="us-east-1",
        )
    )
    creator = JobCreator(
        lambda: catalog.services,
        JobRenderer(RenderSettings(namespace="jobs", stager_image="registry.example/bucketrun:1")),
        storage,
        None,  # type: ignore[arg-type] - prepare() never touches the executor
        lambda timeout: timedelta(hours=2),
    )
    return catalog, creator


def shape(value: Any, path: tuple[Any, ...] = ()) -> set[tuple[tuple[Any, ...], str]]:
    """Every (key path, value type) of a manifest; string contents ignored, list positions kept."""
    found = {(path, type(value).__name__)}
    if isinstance(value, dict):
        for name, item in value.items():
            found |= shape(item, (*path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found |= shape(item, (*path, index))
    return found


def through_the_dispatcher(key: str, pipeline: tuple[Catalog, JobCreator]) -> dict[str, Any] | str:
    """The Job the dispatcher would create for an upload of *key*, or the reason it would not."""
    catalog, creator = pipeline
    body = build_message(
        event_name="s3:ObjectCreated:Put", bucket=BUCKET, key=key, size=3, etag="e" * 32, sequencer="1A"
    )
    try:
        plan = plan_ingress(body, catalog.router)
    except EventError as error:
        return str(error.reason)
    if not plan.tasks:
        return str((plan.ignored or plan.unroutable)[0].reason)
    (task,) = plan.tasks
    _, _, _, job = creator.prepare(task.service, task.body)
    return job


def containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    spec = job["spec"]["template"]["spec"]
    return [*spec["initContainers"], *spec["containers"]]


def env_of(job: dict[str, Any], container: str) -> dict[str, Any]:
    (found,) = [x for x in containers(job) if x["name"] == container]
    return {e["name"]: e.get("value") for e in found["env"]}


def check_key_stays_data(key: str, job: dict[str, Any], plain: dict[str, Any]) -> None:
    assert shape(job) == shape(plain), f"the manifest's shape changed for key {key!r}"
    assert [(x["name"], x["command"], x.get("args")) for x in containers(job)] == [
        (x["name"], x["command"], x.get("args")) for x in containers(plain)
    ], "the key reached a command line"
    name = job["metadata"]["name"]
    assert DNS_LABEL.fullmatch(name), name
    assert len(name) <= 63, name
    run = env_of(job, contract.CONTAINER_RUN)
    assert run["STORAGE_OBJECT_KEY"] == key
    assert json.loads(run["EVENT"])["Records"][0]["s3"]["object"]["key"] == escape_key(key)
    input_path = run["INPUT_FILE_PATH"]
    assert input_path.startswith(run["TMP_INPUT_DIR"] + "/")
    assert "/" not in input_path.removeprefix(run["TMP_INPUT_DIR"] + "/")  # a file name, never a path
    assert env_of(job, "stage-in")["INPUT_FILE_PATH"] == input_path
    assert job["metadata"]["annotations"][c.ANNOTATION_KEY] == key
    text = json.dumps(job, ensure_ascii=False)
    assert SECRET_KEY not in text


def check_refusal(key: str, outcome: str) -> None:
    if is_refused_key(key):
        assert outcome == EventErrorReason.BAD_RECORD, (key, outcome)
    elif key == "" or key.endswith("/"):
        assert outcome == NoRouteReason.FOLDER_MARKER, (key, outcome)
    else:
        assert outcome == NoRouteReason.FOLDER_MISMATCH, (key, outcome)


@pytest.fixture(scope="module")
def plain(pipeline) -> dict[str, Any]:
    job = through_the_dispatcher(PLAIN, pipeline)
    assert isinstance(job, dict)
    kubernetes_validate.validate(job, "1.37.0", strict=True)
    return job


@pytest.mark.parametrize("key", CORPUS, ids=range(len(CORPUS)))
def test_corpus_keys_are_refused_or_stay_data(key, pipeline, plain):
    outcome = through_the_dispatcher(key, pipeline)
    if isinstance(outcome, str):
        check_refusal(key, outcome)
        return
    check_key_stays_data(key, outcome, plain)
    kubernetes_validate.validate(outcome, "1.37.0", strict=True)


def test_the_corpus_refuses_exactly_the_documented_keys(pipeline):
    refused = [key for key in CORPUS if isinstance(through_the_dispatcher(key, pipeline), str)]
    assert refused == [
        "in/../../etc/passwd",
        "in/./x",
        "/etc/passwd",
        "/in/x.txt",
        "../in/x.txt",
        "in/x\x00.txt",
        "in/" + "a" * (MAX_KEY_BYTES - 2),
        "in/x; rm -rf /",  # ends in '/': a folder marker, never a file
        "in/sub/dir/",
        "in/",
        "in/ .. /x",
    ]


def test_unicode_lookalikes_are_distinct_objects_with_distinct_jobs(pipeline):
    variants = [
        "in/caf\u00e9.txt",
        "in/cafe\u0301.txt",
        "in/caf\uff45\u0301.txt",
        "in/a\uff0fb.txt",
        "in/a/b.txt",
    ]
    assert unicodedata.normalize("NFC", variants[1]) == variants[0]  # same text to a human, two keys to S3
    jobs = [through_the_dispatcher(key, pipeline) for key in variants]
    names = [job["metadata"]["name"] for job in jobs if isinstance(job, dict)]
    assert len(set(names)) == len(variants), names
    # The fullwidth solidus is not a separator: the input file keeps it in its one file name.
    assert env_of(jobs[3], contract.CONTAINER_RUN)["INPUT_FILE_PATH"].endswith("/a\uff0fb.txt")  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys_in_folder)
def test_built_keys_in_the_input_folder_are_refused_or_stay_data(key, pipeline, plain):
    outcome = through_the_dispatcher(key, pipeline)
    if isinstance(outcome, str):
        check_refusal(key, outcome)
    else:
        check_key_stays_data(key, outcome, plain)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=any_keys)
def test_any_built_key_is_refused_ignored_or_stays_data(key, pipeline, plain):
    outcome = through_the_dispatcher(key, pipeline)
    if isinstance(outcome, str):
        check_refusal(key, outcome)
    else:
        assert key.startswith("in/")
        check_key_stays_data(key, outcome, plain)


# -- a real pod: the key reaches the script as data, and no shell ever interprets it ------------------------

POD_KEYS = [
    "in/$(touch MARKER).txt",
    "in/`touch MARKER`.txt",
    "in/x; touch MARKER; .txt",
    "in/tab\t$(touch MARKER)\t.txt",  # (moto cannot store a key with a newline; the render tests cover it)
    "in/'\"quoted\" \\ back'.txt",
    "in/{{ 7*7 }} {% raw %}.txt",
    "in/-n",
    "in/\u202etxt.sh",
]


@pytest.mark.integration
@pytest.mark.parametrize("key", POD_KEYS, ids=range(len(POD_KEYS)))
async def test_a_hostile_key_reaches_the_script_byte_exact_and_runs_nothing(s3_endpoint, s3, tmp_path, key):
    marker = tmp_path / "pwned"
    key = key.replace("MARKER", str(marker))
    inputs, outputs = s3.bucket("in"), s3.bucket("out")
    storage = storage_for(s3_endpoint)
    await storage.put_object(inputs, key, b"payload\n")
    text = FDL.replace("BUCKET", inputs).replace("OUTPUTS", outputs)
    (service,) = load_services_text(text, source="keys.yaml", base_dir=tmp_path).services
    catalog = Catalog.of((service,))
    renderer = JobRenderer(RenderSettings(namespace="jobs"))
    creator = JobCreator(lambda: catalog.services, renderer, storage, None, lambda _: timedelta(hours=1))  # type: ignore[arg-type]
    body = build_message(event_name="s3:ObjectCreated:Put", bucket=inputs, key=key, size=8, sequencer="1")
    (task,) = plan_ingress(body, catalog.router).tasks
    _, _, config_map, job = creator.prepare(task.service, task.body)
    job["metadata"]["uid"] = "0f0e0d0c-0000-4000-8000-000000000002"
    pod = pod_manifest(job, name=f"{job['metadata']['name']}-k", uid="pod-uid", created=datetime.now(UTC))
    refs = StaticPodRefs(config_maps={config_map["metadata"]["name"]: config_map["data"]})
    runner = LocalPodRunner(pod, workdir=tmp_path / "pod", refs=refs, grace_seconds=2.0)
    outcome = await runner.run()
    logs = {name: runner.log_path(name).read_text() for name in ("stage-in", "run", "stage-out")}

    assert outcome.phase == "Succeeded", (outcome, logs)
    assert not marker.exists(), "a shell interpreted the object key"
    assert await storage.get_object(outputs, "out/key.txt") == key.encode()
    assert (await storage.get_object(outputs, "out/name.txt")).decode().rstrip("\n") == Path(key).name
    assert await storage.get_object(outputs, "out/content.txt") == b"payload\n"
