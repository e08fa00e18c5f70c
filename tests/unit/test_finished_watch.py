"""Handing finished Jobs to the recorder, in both executors (FinishedJobWatch, LocalFinishedJobs):
transient failures retried (each logged) until the Job is recorded; a permanent one leaves it
unrecorded, for the next list (or start) to offer again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import structlog

from dispatcher.adapters.kube import DocumentPage
from dispatcher.domain.constants import ANNOTATION_RECORDED, LABEL_SERVICE
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.executors.finished_watch import FinishedJobWatch
from dispatcher.executors.local.finished import LocalFinishedJobs


def finished(name: str, uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }


class OnePage:
    """A source whose list is one page of *jobs* (the tests run one list cycle: no watch)."""

    def __init__(self, *jobs: dict[str, Any]) -> None:
        self.jobs = list(jobs)
        self.now: dict[str, dict[str, Any]] = {job["metadata"]["name"]: job for job in jobs}
        """What a read of each Job finds now (the tests change it after the list)."""
        self.reads: list[str] = []

    async def read_job(self, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        return self.now.get(name)

    async def list_job_documents(self, *, limit: int, continue_token: str | None) -> DocumentPage:
        return DocumentPage(items=self.jobs, resource_version="1", continue_token=None)

    def watch_jobs(self, *, resource_version: str, timeout_seconds: int) -> Any:
        raise AssertionError("one list cycle opens no watch")


class Handler:
    """Fails with each of *errors* in turn, then records."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, job: Mapping[str, Any]) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def watch_of(handler: Handler) -> FinishedJobWatch:
    return FinishedJobWatch(OnePage(finished("j1", "u1")), handler, backoff_base=0.01, backoff_cap=0.02)


async def test_transient_failures_are_retried_until_the_job_is_recorded_each_counted_and_logged() -> None:
    handler = Handler(TransientError("HTTP 503"), TransientError("HTTP 500"))
    watch = watch_of(handler)
    with structlog.testing.capture_logs() as logged:
        await asyncio.wait_for(watch.run(max_cycles=1), 10)
    assert handler.calls == 3
    assert (watch.stats.queued, watch.stats.failures, watch.stats.handled) == (1, 2, 1)
    retries = [line for line in logged if line["event"] == "recording a job failed; retrying"]
    assert [(line["job"], line["error"]) for line in retries] == [("j1", "HTTP 503"), ("j1", "HTTP 500")]


async def test_a_permanent_failure_leaves_the_job_for_the_next_list() -> None:
    handler = Handler(PermanentError("HTTP 403", reason="forbidden"))
    watch = watch_of(handler)
    await asyncio.wait_for(watch.run(max_cycles=1), 10)
    assert handler.calls == 1
    assert (watch.stats.failures, watch.stats.handled) == (1, 0)
    await asyncio.wait_for(watch.run(max_cycles=1), 10)  # a new term lists again: offered again
    assert handler.calls == 2
    assert (watch.stats.failures, watch.stats.handled) == (1, 1)


class Finishes:
    """Stands in for the local executor: its ``finished()`` reports *jobs*, then ends."""

    def __init__(self, *jobs: dict[str, Any]) -> None:
        self.jobs = jobs

    async def finished(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        for job in self.jobs:
            yield job["metadata"]["name"], {"job": job}


async def test_local_jobs_are_retried_until_recorded_and_a_permanent_failure_skips_one() -> None:
    handler = Handler(
        TransientError("HTTP 503"), TransientError("HTTP 500"), PermanentError("no", reason="x")
    )
    local = LocalFinishedJobs(
        cast("Any", Finishes(finished("j1", "u1"), finished("j2", "u2"))),
        handler,
        retry_base=0.01,
        retry_cap=0.02,
    )
    with structlog.testing.capture_logs() as logged:
        await asyncio.wait_for(local.run(), 10)
    assert handler.calls == 4  # j1: two transient failures, then recorded; j2: one permanent failure
    events = [line["event"] for line in logged]
    assert events.count("recording a local job failed; retrying") == 2
    assert events.count("recording a local job failed for good") == 1


async def test_the_list_never_waits_for_the_recorder_and_a_backlogged_job_is_read_again() -> None:
    """A real API server drops a watch its client stops reading, and a paged list's continue token
    expires at the next compaction: listing 100 finished Jobs must not wait for their recording."""
    source = OnePage(*(finished(f"j{index}", f"u{index}") for index in range(100)))
    recorded = finished("j99", "u99")
    recorded["metadata"]["annotations"] = {ANNOTATION_RECORDED: "u99"}  # the mark is the Job's UID
    source.now["j99"] = recorded  # recorded meanwhile (by the previous leader, say)
    del source.now["j98"]  # deleted meanwhile
    source.now["j97"] = finished("j97", "another-uid")  # replaced by a new Job of that name
    release, handled = asyncio.Event(), []

    async def record(job: Mapping[str, Any]) -> None:
        await release.wait()
        handled.append(job["metadata"]["name"])

    watch = FinishedJobWatch(source, record, concurrency=2, backoff_base=0.01, backoff_cap=0.02)
    running = asyncio.create_task(watch.run(max_cycles=1))
    await asyncio.wait_for(watch.synced.wait(), 5)  # the whole list is in, nothing recorded yet
    assert (watch.stats.lists, watch.stats.queued, handled) == (1, 100, [])
    assert watch.stats.backlogged == 96  # beyond the 4 documents queued (twice the workers)
    release.set()
    await asyncio.wait_for(running, 10)
    assert sorted(handled) == sorted(f"j{index}" for index in range(97))
    assert (watch.stats.handled, watch.stats.gone) == (97, 3)
    assert sorted(source.reads) == sorted(f"j{index}" for index in range(4, 100))  # each read once


def of_service(job: dict[str, Any], service: str, *, finished: bool = True) -> dict[str, Any]:
    job["metadata"]["labels"] = {LABEL_SERVICE: service}
    job["metadata"]["resourceVersion"] = "1"
    if not finished:
        job["status"] = {}
    return job


class ListThenWatch(OnePage):
    """A list of *jobs*, then one watch stream of *events*."""

    def __init__(self, jobs: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        super().__init__(*jobs)
        self.events = events

    @asynccontextmanager
    async def watch_jobs(self, *, resource_version: str, timeout_seconds: int) -> Any:
        async def stream() -> AsyncIterator[Mapping[str, Any]]:
            for event in self.events:
                yield event

        yield stream()


async def test_the_watch_counts_each_services_unfinished_jobs_from_what_it_reads_anyway() -> None:
    listed = [
        of_service(finished("a1", "u1"), "a", finished=False),
        of_service(finished("a2", "u2"), "a", finished=False),
        of_service(finished("b1", "u3"), "b", finished=False),
        of_service(finished("b0", "u4"), "b"),
    ]
    events = [
        {"type": "MODIFIED", "object": of_service(finished("a1", "u1"), "a")},  # finished
        {"type": "DELETED", "object": of_service(finished("b1", "u3"), "b", finished=False)},
        {"type": "ADDED", "object": of_service(finished("c1", "u5"), "c", finished=False)},
    ]
    watch = FinishedJobWatch(ListThenWatch(listed, events), Handler(), backoff_base=0.01, backoff_cap=0.02)
    await asyncio.wait_for(watch.run(max_cycles=1), 10)  # the list only
    assert watch.index.counts() == {"a": 2, "b": 1}
    await asyncio.wait_for(watch.run(max_cycles=2), 10)  # a new term: the list again, then the watch
    assert watch.index.counts() == {"a": 1, "c": 1}
