"""``RecordStore``: job records in the records bucket, read and written through the storage adapter.

The record itself (its schema, where it lives, how it is built) is ``dispatcher.domain.record``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A record's ``status.json`` as a listing shows it, not read: whose it is and when it was written."""

    service: str
    name: str
    key: str
    written: datetime | None


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

    async def status_objects(self, service: str | None = None) -> list[RecordRef]:
        """Every record's ``status.json`` (of *service*, if given) as the listing shows it: no record is
        read. Every key under the records location is listed (S3 lists 1,000 a request)."""
        prefix = self.prefix + (f"{service}/" if service else "")
        found: list[RecordRef] = []
        for info in await self.storage.list(self.bucket, prefix, limit=None):
            parts = info.key[len(self.prefix) :].split("/")
            if len(parts) == 3 and parts[2] == STATUS_FILE:
                found.append(RecordRef(parts[0], parts[1], info.key, info.last_modified))
        return found

    async def services(self) -> list[str]:
        """The services that have records (the folders of the records location)."""
        folders = await self.storage.folders(self.bucket, self.prefix)
        return [folder[len(self.prefix) :].rstrip("/") for folder in folders]

    async def find(self, name: str | None = None, *, service: str | None = None) -> list[StoredRecord]:
        """Records of Job *name* (of *service*, else of any: one read per service), or every record
        (of *service*)."""
        if name is not None:
            found = []
            for each in [service] if service else await self.services():
                record = await self.read(each, name)
                if record is not None:
                    found.append(StoredRecord(self.folder(each, name) + STATUS_FILE, record))
            return found
        listed = []
        for ref in await self.status_objects(service):
            record = await self.read(ref.service, ref.name)
            if record is not None:
                listed.append(StoredRecord(ref.key, record))
        return listed

    async def delete(self, service: str, name: str) -> int:
        """Delete Job *name*'s record folder (status, logs, outputs manifest); how many objects it held."""
        keys = [
            info.key for info in await self.storage.list(self.bucket, self.folder(service, name), limit=None)
        ]
        await self.storage.delete_objects(self.bucket, keys)
        return len(keys)
