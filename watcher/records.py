"""``RecordStore``: job records in the records bucket, read and written through the storage adapter.

The record itself (its schema, where it lives, how it is built) is ``dispatcher.domain.record``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import PermanentError
from dispatcher.domain.record import (
    LOGS_DIR,
    MAX_MANIFEST_BYTES,
    STATUS_FILE,
    OutputList,
    encode,
    manifest_outputs,
    outputs_manifest_key,
    record_folder,
)
from dispatcher.runtime.concurrency import all_or_none


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
