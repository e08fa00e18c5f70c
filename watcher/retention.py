"""Records retention: a job record is deleted ``records_retention_days`` after it was written, by the
store where it can (an S3 lifecycle rule on the records prefix) and by the watcher where it cannot.

``RecordsRetention.run`` decides once, at the start of each leading term (every start under the local
executor), then keeps to it:

- **days 0**: records are kept for ever; bucketrun's rule, if an earlier start set one, is removed.
- **lifecycle rule** (``records_retention_method: auto``): the rule ``RULE_ID`` expires every object
  under the records prefix ``days`` after it was written (and, in a versioned bucket, its noncurrent
  version a day later). Only that rule is ever written or removed; the bucket's other rules are kept as
  the store returned them. Transient failures are retried with backoff.
- **sweep**: where the store refuses lifecycle configuration (it does not implement it, or the key's
  policy denies it), where the method is ``sweep``, or where the records prefix is empty (a rule would
  cover the whole bucket). Every ``records_retention_interval`` seconds ``RecordsSweep`` looks at the
  next ``records_retention_batch`` keys of the records location and deletes those that are record files
  (``<service>/<job>/status.json``, ``outputs.json``, ``logs/<container>.log``) older than the
  retention, each by its own age, as the rule would. Nothing else that shares the bucket is touched.
  The next pass goes on after the last key seen, so the work of one pass is bounded and the whole
  location is covered, then covered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from dispatcher.adapters.s3.lifecycle import ExpirationRule
from dispatcher.adapters.s3.storage import LifecycleRefusedError, ObjectInfo, Storage
from dispatcher.domain.errors import BucketrunError
from dispatcher.runtime.retrying import retry_transient
from dispatcher.runtime.settings import WatcherSettings
from watcher.records import RecordStore

_log = structlog.get_logger(__name__)

RULE_ID: Final = "bucketrun-records-retention"
"""The ID of bucketrun's lifecycle rule in the records bucket's configuration."""
_RECORD_FILE: Final = re.compile(r"[^/]+/[^/]+/(?:status\.json|outputs\.json|logs/[^/]+\.log)")
_RETRY_BASE: Final = 1.0
_RETRY_CAP: Final = 60.0


class Method(enum.StrEnum):
    """How records expire, once ``RecordsRetention`` has decided."""

    KEEP = "keep"
    """Retention 0: records are kept for ever."""
    RULE = "lifecycle-rule"
    """The store expires them (bucketrun's lifecycle rule)."""
    SWEEP = "sweep"
    """The watcher deletes them (``RecordsSweep``)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def is_record_file(relative_key: str) -> bool:
    """Whether *relative_key* (a key with the records prefix taken off) is one of a record's files."""
    return _RECORD_FILE.fullmatch(relative_key) is not None


def expired_keys(infos: Iterable[ObjectInfo], prefix: str, cutoff: datetime) -> list[str]:
    """The keys among *infos* that are record files under *prefix* written before *cutoff*."""
    return [
        info.key
        for info in infos
        if info.key.startswith(prefix)
        and is_record_file(info.key[len(prefix) :])
        and info.last_modified is not None
        and info.last_modified < cutoff
    ]


class RecordsSweep:
    """Deletes the expired record files of *store*'s location, at most *batch* keys looked at a pass."""

    def __init__(
        self, store: RecordStore, *, days: int, batch: int, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        if days < 1 or batch < 1:
            raise ValueError(f"a sweep needs days and batch of at least 1, not {days} and {batch}")
        self.store = store
        self.retention = timedelta(days=days)
        self.batch = batch
        self.clock = clock
        self.after: str | None = None
        """The last key the previous pass looked at (None: the next pass starts at the beginning)."""

    async def pass_once(self) -> int:
        """Look at the next *batch* keys, delete the expired record files among them; how many."""
        storage: Storage = self.store.storage
        infos = await storage.list(
            self.store.bucket, self.store.prefix, limit=self.batch, start_after=self.after
        )
        doomed = expired_keys(infos, self.store.prefix, self.clock() - self.retention)
        await storage.delete_objects(self.store.bucket, doomed)
        self.after = infos[-1].key if len(infos) == self.batch else None
        return len(doomed)


class RecordsRetention:
    """Applies ``records_retention_*`` of *settings* to *store*'s records (see the module docstring)."""

    def __init__(
        self,
        store: RecordStore,
        settings: WatcherSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        on_deleted: Callable[[int], object] = lambda count: None,
    ) -> None:
        self.store = store
        self.on_deleted = on_deleted
        """Told how many record files each sweep pass deleted (the watcher counts them in a metric)."""
        self.days = settings.records_retention_days
        self.rule_allowed = settings.records_retention_method == "auto"
        self.interval = settings.records_retention_interval
        self.batch = settings.records_retention_batch
        self.clock = clock
        self.method: Method | None = None
        """What ``run`` decided (None until it has)."""
        self.swept = 0
        """Record files the sweep deleted so far."""

    @property
    def rule(self) -> ExpirationRule:
        """bucketrun's lifecycle rule for these settings."""
        return ExpirationRule(RULE_ID, self.store.prefix, self.days)

    async def run(self) -> None:
        """Decide how records expire, set or remove the rule as decided, then sweep if that is the way;
        until cancelled. Errors of the store are logged and tried again, never raised."""
        self.method = await self._decide()
        _log.info(
            "records retention",
            method=str(self.method),
            days=self.days,
            bucket=self.store.bucket,
            prefix=self.store.prefix,
        )
        if self.method is Method.SWEEP:
            await self._sweep()

    async def _decide(self) -> Method:
        if self.days == 0 or not self.store.prefix:
            if self.rule_allowed:
                await self._until_done(self._remove_rule)
            return Method.KEEP if self.days == 0 else Method.SWEEP
        if not self.rule_allowed:
            return Method.SWEEP
        return await self._until_done(self._set_rule)

    async def _set_rule(self) -> Method:
        try:
            await retry_transient(
                lambda: self.store.storage.put_expiration_rule(self.store.bucket, self.rule),
                what="setting the records retention rule",
                base=_RETRY_BASE,
                cap=_RETRY_CAP,
            )
        except LifecycleRefusedError as error:
            _log.warning(
                "the store refuses lifecycle rules: the watcher deletes expired records itself",
                error=str(error),
            )
            return Method.SWEEP
        return Method.RULE

    async def _remove_rule(self) -> Method:
        with contextlib.suppress(LifecycleRefusedError):  # such a store holds no rule of bucketrun's
            await retry_transient(
                lambda: self.store.storage.remove_lifecycle_rule(self.store.bucket, RULE_ID),
                what="removing the records retention rule",
                base=_RETRY_BASE,
                cap=_RETRY_CAP,
            )
        return Method.KEEP

    async def _until_done(self, step: Callable[[], Awaitable[Method]]) -> Method:
        """*step*, again every ``interval`` seconds while the store answers with another error (a
        records bucket that does not exist yet, say)."""
        while True:
            try:
                return await step()
            except BucketrunError as error:
                _log.error("records retention: the store failed; trying again", error=str(error))
            await asyncio.sleep(self.interval)

    async def _sweep(self) -> None:
        sweep = RecordsSweep(self.store, days=self.days, batch=self.batch, clock=self.clock)
        while True:
            try:
                deleted = await sweep.pass_once()
            except BucketrunError as error:
                _log.error("records retention: a sweep pass failed", error=str(error))
            else:
                self.swept += deleted
                self.on_deleted(deleted)
                if deleted:
                    _log.info("records retention: expired record files deleted", count=deleted)
            await asyncio.sleep(self.interval)
