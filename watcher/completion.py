"""One finished Job, recorded: classify, write the record, publish the event, mark the Job.

Every step is idempotent and keyed on the Job's UID, so a Job handled twice (a restarted watcher, a
new leader, a retried failure) does no harm:

1. a Job whose ``bucketrun.io/recorded`` annotation holds its UID is done: skipped;
2. a record whose ``status.json`` holds the UID is complete: not written again (the event is
   published from it);
3. the event is published with the UID as message id (consumers deduplicate on it);
4. the Job is marked recorded with its UID (``Executor.mark_recorded``: an annotation in a cluster,
   ``status.json`` for the local executor).

Where the Jobs live is the executor's business (``dispatcher.executors.base.Executor``): their pods,
their logs and the mark come from it, the record and the event from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_BUCKET, ANNOTATION_KEY, ANNOTATION_VERSION
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.jobs import is_recorded, job_service
from dispatcher.domain.outcome import NOT_FINISHED, Outcome, classify
from dispatcher.domain.record import OutputList, build_record, container_names, output_keys
from dispatcher.domain.timings import job_timings
from dispatcher.executors.base import Executor
from dispatcher.runtime.concurrency import all_or_none, both
from dispatcher.runtime.metrics import WatcherMetrics
from dispatcher.runtime.retrying import OutOfTimeError, retry_transient
from job_templates.stager.contract import CONTAINER_STAGE_OUT
from watcher.completion_events import CompletionEvents
from watcher.records import RecordStore

_log = structlog.get_logger(__name__)

_LOG_RETRY_BASE: Final = 0.2  # seconds: backoff between tries of one log read (ceiling doubles)
_LOG_RETRY_CAP: Final = 5.0
NO_POD: Final = "no pod: the Job started none, or its pods are gone"
NO_LOG: Final = "no log: the container never started, or its pod is gone"


@contextmanager
def _work_context(job: Mapping[str, Any]) -> Iterator[None]:
    """Bind the Job's unit-of-work keys (the same ones the dispatcher's lines for it carry) to every
    log line written while it is recorded."""
    annotations = kube.annotations(job)
    with structlog.contextvars.bound_contextvars(
        event_id=annotations.get(ANNOTATION_VERSION),
        service=job_service(job),
        bucket=annotations.get(ANNOTATION_BUCKET),
        key=annotations.get(ANNOTATION_KEY),
        job=kube.name(job),
        uid=kube.uid(job),
    ):
        yield


@dataclass
class CompletionStats:
    """What the recorder has done so far (for tests, logs and metrics)."""

    recorded: int = 0
    """Jobs recorded (record written or found, event published, Job marked)."""
    records_written: int = 0
    """``status.json`` writes."""
    skipped: int = 0
    """Jobs found already marked recorded."""


class Recorder:
    """Records finished Jobs: the four idempotent steps of the module docstring."""

    def __init__(
        self,
        executor: Executor,
        store: RecordStore,
        events: CompletionEvents,
        *,
        tail_lines: int,
        log_read_timeout: float = 30.0,
        metrics: WatcherMetrics | None = None,
    ) -> None:
        self.executor = executor
        """Where the Jobs run: their pods, their logs, and the recorded mark."""
        self.store = store
        self.events = events
        self.tail_lines = tail_lines
        self.log_read_timeout = log_read_timeout
        """Seconds one container's log may take, retries included, before it is recorded as missing."""
        self.stats = CompletionStats()
        self.metrics = metrics

    async def record(self, job: Mapping[str, Any], outcome: Outcome | None = None) -> bool:
        """Record the finished *job*; False when it was recorded already. Errors are bucketrun's.

        *outcome* is what the caller decided for a Job its pods cannot show (one that never got a pod);
        without it, ``classify`` decides from the Job and its pods.
        """
        if is_recorded(job):
            self.stats.skipped += 1
            return False
        uid = kube.uid(job)
        with _work_context(job), self._counting_errors():
            written_before = self.stats.records_written
            record = await self._stored(job, uid, outcome)
            await self.events.publish(record)
            await self.executor.mark_recorded(job)
            self.stats.recorded += 1
            if self.stats.records_written > written_before:
                self._observe(job, str(record.get("outcome")))
            _log.info("job recorded", outcome=record.get("outcome"), exit_code=record.get("exit_code"))
        return True

    def _observe(self, job: Mapping[str, Any], outcome: str) -> None:
        """Count and time a Job recorded for the first time (a re-found record was counted already)."""
        if self.metrics is None:
            return
        service = job_service(job) or ""
        timings = job_timings(job, datetime.now(UTC))
        self.metrics.jobs_finished.labels(service, outcome).inc()
        self.metrics.records_written.inc()
        for histogram, seconds in (
            (self.metrics.created_to_started.labels(service), timings.created_to_started),
            (self.metrics.started_to_finished.labels(service), timings.started_to_finished),
            (self.metrics.finished_to_recorded, timings.finished_to_recorded),
            (self.metrics.end_to_end.labels(service), timings.end_to_end),
        ):
            if seconds is not None:
                histogram.observe(seconds)

    @contextmanager
    def _counting_errors(self) -> Iterator[None]:
        try:
            yield
        except (TransientError, PermanentError) as error:
            if self.metrics is not None:
                label = error.kind if isinstance(error, TransientError) else error.reason
                self.metrics.record_errors.labels(label).inc()
            raise

    async def _stored(self, job: Mapping[str, Any], uid: str, decided: Outcome | None) -> dict[str, Any]:
        """The Job's record: the one already stored for this UID, else a new one (of the *decided*
        outcome, else the classified one), written now."""
        # Independent reads go out together: a record costs round trips, not CPU.
        pods, existing = await both(
            self.executor.job_pods(job), self.store.read(job_service(job) or "", kube.name(job))
        )
        if existing is not None and existing.get("uid") == uid:
            return existing
        outcome = decided or classify(job, pods)
        if outcome.reason == NOT_FINISHED:
            # Records are for finished Jobs, and for Jobs whose pod can never start (classify says why):
            # one whose pod just got going again is left running.
            raise PermanentError(f"Job {kube.name(job)} has not finished", reason="not-finished")
        (logs, logs_missing), manifest = await both(
            self._logs(job, pods), self.store.read_outputs(job_service(job) or "", kube.name(job))
        )
        record = build_record(
            job,
            outcome,
            outputs=manifest if manifest is not None else _outputs_from_log(logs),
            logs=logs,
            logs_missing=logs_missing,
            records_prefix=self.store.prefix,
        )
        await self.store.write(record, logs)
        self.stats.records_written += 1
        return record

    async def _logs(
        self, job: Mapping[str, Any], pods: list[dict[str, Any]]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The newest pod's container logs that could be read (together), and why each other is missing."""
        names = container_names(job)
        if not pods:
            return {}, dict.fromkeys(names, NO_POD)
        pod = str(kube.meta(pods[-1]).get("name", ""))
        reads = await all_or_none(self._log(job, pod, name) for name in names)
        logs = {name: text for name, (text, _) in zip(names, reads, strict=True) if text is not None}
        missing = {name: why for name, (_, why) in zip(names, reads, strict=True) if why is not None}
        return logs, missing

    async def _log(self, job: Mapping[str, Any], pod: str, container: str) -> tuple[str | None, str | None]:
        """(log, None), or (None, why not). Transient failures are retried for ``log_read_timeout``
        seconds, no longer: a dead node answers 5xx for its pods' logs until they are deleted, and the
        record must not wait for that (nor hold up a worker)."""
        try:
            text = await retry_transient(
                lambda: self.executor.container_log(job, pod, container, self.tail_lines),
                what="reading a container's log failed",
                base=_LOG_RETRY_BASE,
                cap=_LOG_RETRY_CAP,
                seconds=self.log_read_timeout,
                container=container,
            )
        except (OutOfTimeError, PermanentError) as error:
            _log.warning("recording without a container's log", container=container, error=str(error))
            return None, f"unreadable: {error}"
        return (text, None) if text is not None else (None, NO_LOG)


def _outputs_from_log(logs: Mapping[str, str]) -> OutputList:
    """A record's outputs when stage-out stored no manifest: its log's upload lines, if there is a log."""
    stage_out = logs.get(CONTAINER_STAGE_OUT)
    return output_keys(stage_out) if stage_out is not None else OutputList()
