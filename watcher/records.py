"""Job records: what is kept of a finished Job once its pods are gone, and where it is kept.

A record lives under ``<records_bucket>/<records_prefix (a folder)>/<service>/<job-name>/``::

    status.json           the record below (also the body of the completion event)
    logs/<container>.log  the last lines of each container's log (newest pod)
    outputs.json          every object stage-out uploaded (written by stage-out itself, see below)

``status.json`` is written last: it is the commit mark, so a record whose ``status.json`` carries the
Job's UID is complete, and a watcher that finds it skips the write (records are keyed on the UID;
writing the same record again would be harmless anyway).

**Output keys** come from ``outputs.json``, which stage-out PUTs into the record folder through a
presigned grant of exactly that key (``dispatcher.fdl.records_location`` names it for both
sides), listing everything it uploaded, also after a partial failure. The watcher reads at most
``MAX_MANIFEST_BYTES`` of it and the record lists at most ``MAX_OUTPUTS`` objects (it says when it was
cut short; the manifest beside it stays complete). A Job without a manifest (rendered before there
was one, or its PUT failed) falls back on the stage-out log, whose JSON lines report each upload
(``{"event": "uploaded", "bucket": ..., "key": ..., ...}``), as far as the kept tail reaches.

Fields of ``status.json`` (schema ``bucketrun.io/job-record/v1``):

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

The record builders are pure; ``RecordStore`` does the storage I/O through ``dispatcher.adapters.s3.storage``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.constants import ANNOTATION_BUCKET, ANNOTATION_KEY, ANNOTATION_VERSION
from dispatcher.domain.errors import PermanentError
from dispatcher.domain.jobs import finished_condition, job_name, job_service
from dispatcher.domain.outcome import Outcome
from dispatcher.fdl.records_location import outputs_manifest_key, record_folder
from dispatcher.runtime.concurrency import all_or_none
from job_templates.stager.contract import UPLOADED_EVENT

STATUS_FILE: Final = "status.json"
LOGS_DIR: Final = "logs"
RECORD_SCHEMA: Final = "bucketrun.io/job-record/v1"
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
    metadata = job.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = job.get("status") or {}
    service = job_service(job) or ""
    name = job_name(job)
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
    status = job.get("status") or {}
    if status.get("completionTime"):
        return str(status["completionTime"])
    finished = finished_condition(job)
    for condition in status.get("conditions") or ():
        if condition.get("type") == finished and condition.get("lastTransitionTime"):
            return str(condition["lastTransitionTime"])
    return None


def encode(record: Mapping[str, Any]) -> bytes:
    """The record as ``status.json`` and event body: UTF-8 JSON, keys in a stable order."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record found in the records location."""

    key: str
    record: dict[str, Any]


class RecordStore:
    """Reads and writes job records in ``bucket`` under ``prefix`` (bucketrun's own storage)."""

    def __init__(self, storage: Storage, bucket: str, prefix: str) -> None:
        self.storage = storage
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""  # a folder, as record_folder

    def folder(self, service: str, name: str) -> str:
        """The key prefix of one Job's record."""
        return record_folder(self.prefix, service, name)

    async def read(self, service: str, name: str) -> dict[str, Any] | None:
        """The record of Job *name* of *service*, or None when there is none (yet)."""
        try:
            body = await self.storage.get_object(self.bucket, self.folder(service, name) + STATUS_FILE)
        except PermanentError as error:
            if error.reason == "storage-not-found":
                return None
            raise
        try:
            record = json.loads(body)
        except ValueError:
            return None  # a damaged record is rewritten
        return record if isinstance(record, dict) else None

    async def write(self, record: Mapping[str, Any], logs: Mapping[str, str]) -> None:
        """Store the logs (together), then ``status.json`` (the commit mark)."""
        folder = self.folder(str(record["service"]), str(record["job"]))
        await all_or_none(
            self.storage.put_object(
                self.bucket,
                f"{folder}{LOGS_DIR}/{container}.log",
                text.encode("utf-8"),
                content_type="text/plain; charset=utf-8",
            )
            for container, text in logs.items()
        )
        await self.storage.put_object(
            self.bucket, folder + STATUS_FILE, encode(record), content_type="application/json"
        )

    async def read_outputs(self, service: str, name: str) -> OutputList | None:
        """The outputs the Job's ``outputs.json`` lists (its first ``MAX_MANIFEST_BYTES``), or None when
        stage-out stored none."""
        key = outputs_manifest_key(self.prefix, service, name)
        try:
            body = await self.storage.get_object(self.bucket, key, max_bytes=MAX_MANIFEST_BYTES + 1)
        except PermanentError as error:
            if error.reason == "storage-not-found":
                return None
            raise
        return manifest_outputs(body[:MAX_MANIFEST_BYTES], cut=len(body) > MAX_MANIFEST_BYTES)

    async def read_log(self, service: str, name: str, container: str) -> str | None:
        """A container's stored log, or None when the record has none."""
        try:
            body = await self.storage.get_object(
                self.bucket, f"{self.folder(service, name)}{LOGS_DIR}/{container}.log"
            )
        except PermanentError as error:
            if error.reason == "storage-not-found":
                return None
            raise
        return body.decode("utf-8", "replace")

    async def find(self, name: str | None = None, *, service: str | None = None) -> list[StoredRecord]:
        """Records of Job *name* (any service, unless given), or every record (of *service*)."""
        prefix = self.prefix + (f"{service}/" if service else "")
        found: list[StoredRecord] = []
        for info in await self.storage.list(self.bucket, prefix):
            parts = info.key[len(self.prefix) :].split("/")
            if len(parts) != 3 or parts[2] != STATUS_FILE or (name is not None and parts[1] != name):
                continue
            record = await self.read(parts[0], parts[1])
            if record is not None:
                found.append(StoredRecord(info.key, record))
        return found
