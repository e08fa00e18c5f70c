"""Job records: what is kept of a finished Job once its pods are gone, and where it is kept.

A record lives under ``<records_bucket>/<records_prefix (a folder)>/<service>/<job-name>/``::

    status.json           the record below (also the body of the completion event)
    logs/<container>.log  the last lines of each container's log (newest pod)
    outputs.json          every object stage-out uploaded (written by stage-out itself, see below)

``status.json`` is written last: it is the commit mark, so a record whose ``status.json`` carries the
Job's UID is complete, and a watcher that finds it skips the write (records are keyed on the UID;
writing the same record again would be harmless anyway).

**Output keys** come from ``outputs.json``, which stage-out PUTs into the record folder through a
presigned grant of exactly that key (``outputs_manifest_key`` here names it for both
sides), listing everything it uploaded, also after a partial failure. The watcher reads at most
``MAX_MANIFEST_BYTES`` of it and the record lists at most ``MAX_OUTPUTS`` objects (it says when it was
cut short; the manifest beside it stays complete). A Job without a manifest (rendered before there
was one, or its PUT failed) falls back on the stage-out log, whose JSON lines report each upload
(``{"event": "uploaded", "bucket": ..., "key": ..., ...}``), as far as the kept tail reaches.

Fields of ``status.json`` (``RECORD_SCHEMA``, ``bucketrun.io/job-record/v1``):

- ``schema``, ``service``, ``job``, ``namespace``, ``uid``: what the record is of;
- ``bucket``, ``key``, ``version``: the object version that triggered the Job;
- ``outcome``, ``reason``, ``message``, ``exit_code``: how it ended (``dispatcher.domain.outcome``);
- ``created``, ``started``, ``finished``: the Job's timestamps;
- ``outputs``: ``[{"bucket", "key"}]``, what stage-out uploaded, in order, at most ``MAX_OUTPUTS``;
- ``outputs_source``: ``manifest`` (from ``outputs.json``: complete), ``log`` (no manifest: the upload
  lines of the stage-out log, as far as its kept tail reaches) or ``missing`` (neither; ``outputs`` is
  empty);
- ``outputs_truncated``: true when there were more outputs than ``outputs`` lists;
- ``logs``: container → key of its stored log;
- ``logs_missing``: container → why its log is not stored (no pod, no log, or reads that kept failing
  for ``BUCKETRUN_WATCHER__LOG_READ_TIMEOUT`` seconds).

This module is the schema and its pure builders; ``watcher.records.RecordStore`` stores them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_BUCKET, ANNOTATION_KEY, ANNOTATION_VERSION
from dispatcher.domain.jobs import finished_condition, job_service
from dispatcher.domain.outcome import Outcome
from job_templates.stager.contract import UPLOADED_EVENT

OUTPUTS_MANIFEST_FILE: Final = "outputs.json"
"""Name, in a Job's record folder, of the complete list of objects its stage-out uploaded."""


STATUS_FILE: Final = "status.json"
"""Name, in a Job's record folder, of the record itself (written last: the commit mark)."""
LOGS_DIR: Final = "logs"
"""Folder, in a Job's record folder, of the stored container logs (``<container>.log``)."""
RECORD_SCHEMA: Final = "bucketrun.io/job-record/v1"
"""The ``schema`` field of every record: which version of the fields listed in the module docstring."""
MAX_OUTPUTS: Final = 10_000
"""Outputs a record lists at most: a record must stay small enough to publish as one message."""
MAX_MANIFEST_BYTES: Final = 16 * 1024**2
"""Bytes of ``outputs.json`` the watcher reads at most: ``MAX_OUTPUTS`` entries with 1,024-byte keys."""


class OutputsSource(enum.StrEnum):
    """Where a record's ``outputs`` come from."""

    MANIFEST = "manifest"
    """``outputs.json`` in the record folder, as stage-out wrote it: complete."""
    LOG = "log"
    """No manifest: the upload lines of the stage-out log, as far as its kept tail reaches."""
    MISSING = "missing"
    """Neither a manifest nor a stage-out log: nothing is known about outputs."""


@dataclass(frozen=True, slots=True)
class OutputList:
    """A record's outputs: ``[{"bucket", "key"}]``, where they come from, and whether more were left out."""

    entries: tuple[dict[str, str], ...] = ()
    source: OutputsSource = OutputsSource.MISSING
    truncated: bool = False


def tail(text: str, lines: int) -> str:
    """The last *lines* lines of *text* (all of it when shorter)."""
    if lines <= 0:
        return ""
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept)


def output_keys(stage_out_log: str) -> OutputList:
    """The uploads the stage-out log's JSON lines report (``{"event": "uploaded", ...}``)."""
    lines = (line.strip() for line in stage_out_log.splitlines())
    return _output_list(lines, OutputsSource.LOG, event=UPLOADED_EVENT)


def manifest_outputs(manifest: bytes, *, cut: bool = False) -> OutputList:
    """The uploads stage-out's ``outputs.json`` lists (one JSON object per line).

    *cut*: *manifest* is only the beginning of a longer document; its whole lines are used, and the list
    is marked truncated.
    """
    lines = (line.strip().rstrip(b",").decode("utf-8", "replace") for line in manifest.split(b"\n"))
    found = _output_list(lines, OutputsSource.MANIFEST)
    return OutputList(found.entries, found.source, found.truncated or cut)


def _output_list(lines: Iterable[str], source: OutputsSource, *, event: str | None = None) -> OutputList:
    """``{"bucket", "key"}`` of each line that is a JSON object (with ``event``, if given), in order, once
    each, at most ``MAX_OUTPUTS``."""
    seen: set[tuple[str, str]] = set()
    found: list[dict[str, str]] = []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or (event is not None and entry.get("event") != event):
            continue
        bucket, key = entry.get("bucket"), entry.get("key")
        if isinstance(bucket, str) and isinstance(key, str) and (bucket, key) not in seen:
            if len(found) >= MAX_OUTPUTS:
                return OutputList(tuple(found), source, truncated=True)
            seen.add((bucket, key))
            found.append({"bucket": bucket, "key": key})
    return OutputList(tuple(found), source)


def container_names(job: Mapping[str, Any]) -> list[str]:
    """The Job's init containers, then its containers, as its pod template names them."""
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    names = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
    return [str(container.get("name")) for container in names if container.get("name")]


def build_record(
    job: Mapping[str, Any],
    outcome: Outcome,
    *,
    outputs: OutputList,
    logs: Mapping[str, str],
    logs_missing: Mapping[str, str] | None = None,
    log_keys: bool = True,
    records_prefix: str = "",
) -> dict[str, Any]:
    """The record of the finished *job* (plain JSON data): what ``status.json`` and the event hold.

    *logs* names the containers whose logs are stored; with *log_keys*, each maps to its object key.
    *logs_missing* says, per container, why its log is not.
    """
    metadata = kube.meta(job)
    annotations = kube.annotations(job)
    status = kube.job_status(job)
    service = job_service(job) or ""
    name = kube.name(job)
    folder = record_folder(records_prefix, service, name)
    return {
        "schema": RECORD_SCHEMA,
        "service": service,
        "bucket": annotations.get(ANNOTATION_BUCKET),
        "key": annotations.get(ANNOTATION_KEY),
        "version": annotations.get(ANNOTATION_VERSION) or None,
        "job": name,
        "namespace": metadata.get("namespace"),
        "uid": metadata.get("uid"),
        "outcome": outcome.kind.value,
        "reason": outcome.reason,
        "message": outcome.message,
        "exit_code": outcome.exit_code,
        "created": metadata.get("creationTimestamp"),
        "started": status.get("startTime"),
        "finished": finished_at(job),
        "outputs": [dict(entry) for entry in outputs.entries],
        "outputs_source": outputs.source.value,
        "outputs_truncated": outputs.truncated,
        "logs": {
            container: f"{folder}{LOGS_DIR}/{container}.log" if log_keys else None for container in logs
        },
        "logs_missing": dict(logs_missing or {}),
    }


def finished_at(job: Mapping[str, Any]) -> str | None:
    """When the Job finished: ``completionTime``, else its Complete/Failed condition's transition time."""
    status = kube.job_status(job)
    if status.get("completionTime"):
        return str(status["completionTime"])
    finished = finished_condition(job)
    for condition in kube.conditions(job):
        if condition.get("type") == finished and condition.get("lastTransitionTime"):
            return str(condition["lastTransitionTime"])
    return None


def encode(record: Mapping[str, Any]) -> bytes:
    """The record as ``status.json`` and event body: UTF-8 JSON, keys in a stable order."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")


def record_folder(prefix: str, service: str, name: str) -> str:
    """``<prefix>/<service>/<name>/``: the folder of one Job's record.

    The prefix is a folder, as ``check_records_location`` reads it: glued on as text, a prefix ``i``
    and a service ``n`` would write under ``in/``, which the check never saw.
    """
    folder = prefix.strip("/")
    return f"{folder}/{service}/{name}/" if folder else f"{service}/{name}/"


def outputs_manifest_key(prefix: str, service: str, name: str) -> str:
    """The key of Job *name*'s outputs manifest in the records bucket."""
    return record_folder(prefix, service, name) + OUTPUTS_MANIFEST_FILE
