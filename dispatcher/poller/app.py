"""``bucketrun poll``: MinIO-format events for S3 stores that cannot send bucket notifications.

Every ``poller.interval`` seconds each service input path (bucket + folder) of bucketrun's own storage
is listed; every object version not announced before (key + eTag + LastModified) is published as an
``s3:ObjectCreated:Put`` event to the events exchange, with publisher confirms, then remembered in
``SeenObjects``. Only confirmed events are remembered, so a crash re-announces at most one batch (the
dispatcher's Job names, derived from the object version, make that duplicate harmless); an object
re-uploaded with new content has a new eTag or LastModified and is announced again.

The event's sequencer is the object's LastModified in hexadecimal nanoseconds: the same object version
gets the same sequencer however often it is listed, so its Job name is stable across polls and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog

from dispatcher.adapters.amqp.client import AmqpClient
from dispatcher.adapters.s3.storage import ObjectInfo, Storage
from dispatcher.domain.errors import BucketrunError, PermanentError
from dispatcher.domain.events import build_message
from dispatcher.fdl import DEFAULT_PROVIDER, ServiceDefinition
from dispatcher.fdl.catalog import load_catalog
from dispatcher.poller.seen_objects import ObjectIdentity, SeenObjects
from dispatcher.runtime.settings import AmqpSettings, Settings

EVENT_NAME: Final = "s3:ObjectCreated:Put"
"""What the poller reports every new object version as (it cannot tell Put, Post or Copy apart)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_log = structlog.get_logger("bucketrun.poller")


@dataclass(frozen=True, slots=True)
class ListTarget:
    """One listing per cycle: a bucket and a key prefix (``""`` or ``"folder/"``)."""

    bucket: str
    prefix: str


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one cycle did."""

    listed: int
    """Objects the listings returned (folder markers included)."""
    published: int
    """New object versions announced."""


def list_targets(services: Iterable[ServiceDefinition]) -> tuple[ListTarget, ...]:
    """The listings that cover every input path on bucketrun's own storage, none inside another.

    Inputs on other storage providers are left out (the poller lists one store). A folder nested in
    another listed folder of the same bucket is dropped, so no object is listed twice in a cycle.
    """
    wanted = {
        ListTarget(path.bucket, f"{path.folder}/" if path.folder else "")
        for service in services
        for path in service.inputs
        if path.provider == DEFAULT_PROVIDER
    }
    return tuple(
        sorted(
            (
                target
                for target in wanted
                if not any(
                    other != target
                    and other.bucket == target.bucket
                    and target.prefix.startswith(other.prefix)
                    for other in wanted
                )
            ),
            key=lambda target: (target.bucket, target.prefix),
        )
    )


def sequencer_of(last_modified: datetime) -> str:
    """LastModified as hexadecimal nanoseconds since the epoch (upper case, as MinIO writes sequencers)."""
    moment = last_modified.replace(tzinfo=UTC) if last_modified.tzinfo is None else last_modified
    delta = moment - _EPOCH
    nanoseconds = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    return f"{nanoseconds:X}"


def identity_of(info: ObjectInfo) -> ObjectIdentity | None:
    """The object version a listing entry names; None for folder markers and entries without a version."""
    if not info.key or info.key.endswith("/") or info.etag is None or info.last_modified is None:
        return None
    stamp = info.last_modified.astimezone(UTC) if info.last_modified.tzinfo else info.last_modified
    return ObjectIdentity(info.bucket, info.key, info.etag, stamp.isoformat())


def event_of(info: ObjectInfo) -> bytes:
    """The MinIO notification an upload of ``info`` would have produced."""
    return build_message(
        event_name=EVENT_NAME,
        bucket=info.bucket,
        key=info.key,
        size=info.size,
        etag=info.etag,
        version_id=info.version_id,
        sequencer=sequencer_of(info.last_modified) if info.last_modified else None,
        event_time=info.last_modified,
        content_type=info.content_type,
    )


def routing_key_of(settings: AmqpSettings) -> str:
    """The routing key to publish with: the ingress binding's, unless it is a topic pattern.

    A pattern with ``*`` or ``#`` is not a key; the empty key then matches the usual ``#`` binding.
    """
    key = settings.routing_key
    return "" if settings.exchange_type == "topic" and any(c in key for c in "*#") else key


class Poller:
    """Announces new object versions under ``targets``; ``poll_once()`` runs one cycle."""

    def __init__(
        self,
        settings: Settings,
        amqp: AmqpClient,
        storage: Storage,
        seen: SeenObjects,
        targets: Sequence[ListTarget],
        *,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Use these connections and this state (the caller owns and closes them); once ``stop`` is set,
        a cycle ends after its current batch."""
        self._settings = settings
        self._amqp = amqp
        self._storage = storage
        self._seen = seen
        self._stop = stop or asyncio.Event()
        self.targets = tuple(targets)
        """What each cycle lists."""

    async def poll_once(self) -> PollReport:
        """List every target once and announce what is new.

        A bucket that cannot be listed for good (missing, access denied) is logged and skipped;
        ``TransientError`` (storage or broker unavailable) ends the cycle: the next one retries.
        """
        listed = published = 0
        for target in self.targets:
            if self._stop.is_set():
                break
            try:
                found = await self._storage.list(target.bucket, target.prefix)
            except PermanentError as error:
                _log.warning(
                    "cannot list an input path", bucket=target.bucket, prefix=target.prefix, error=str(error)
                )
                continue
            listed += len(found)
            published += await self._announce(found)
        return PollReport(listed, published)

    async def _announce(self, found: Iterable[ObjectInfo]) -> int:
        fresh = [
            (info, identity)
            for info in found
            if (identity := identity_of(info)) and identity not in self._seen
        ]
        size = self._settings.poller.batch_size
        for start in range(0, len(fresh), size):
            if self._stop.is_set():
                return start
            batch = fresh[start : start + size]
            await asyncio.gather(*(self._publish(info) for info, _ in batch))
            # Only after every confirmation: what is recorded was certainly taken by the broker.
            self._seen.add_all(identity for _, identity in batch)
        return len(fresh)

    async def _publish(self, info: ObjectInfo) -> None:
        amqp = self._settings.amqp
        await self._amqp.publisher.publish(
            amqp.exchange, routing_key_of(amqp), event_of(info), content_type="application/json"
        )


async def run_poller(settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Poll until ``stop`` is set; ``ready`` is set once connected and the first cycle is done.

    ``StartupError`` when the service definitions do not load; ``TransientError`` when the broker cannot
    be reached at start. Failures of a cycle are logged and the next cycle retries.
    """
    storage_settings = settings.storage
    catalog = load_catalog(
        settings.services.paths,
        (storage_settings.records_bucket, storage_settings.records_prefix),
        cluster=settings.services.cluster,
    )
    targets = list_targets(catalog.services.values())
    storage = Storage(storage_settings)
    async with await AmqpClient.connect(settings.amqp, connection_name="bucketrun-poller") as amqp:
        await amqp.declare_topology()
        with SeenObjects(settings.poller.state_file) as seen:
            poller = Poller(settings, amqp, storage, seen, targets, stop=stop)
            _log.info(
                "poller started", targets=[f"{t.bucket}/{t.prefix}" for t in targets], remembered=len(seen)
            )
            while not stop.is_set():
                try:
                    report = await poller.poll_once()
                except BucketrunError as error:
                    _log.warning("poll cycle failed; retrying next cycle", error=str(error))
                else:
                    if report.published:
                        _log.info("announced new objects", published=report.published, listed=report.listed)
                if ready is not None:
                    ready.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.poller.interval)
    if ready is not None:
        ready.clear()
