"""The informer's list/watch loop against a scripted JobSource: paging, 410s, ERROR events, back-off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from dispatcher.adapters.kube import informer as informer_module
from dispatcher.adapters.kube.informer import JobInformer, JobPage, ResourceExpired
from dispatcher.adapters.kube.list_watch import WatchStalled
from dispatcher.domain.constants import LABEL_SERVICE
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.jobs import JobFacts, JobIndex


def obj(name: str, version: str, service: str = "a", finished: bool = False) -> dict:
    conditions = [{"type": "Complete", "status": "True"}] if finished else []
    return {
        "metadata": {"name": name, "resourceVersion": version, "labels": {LABEL_SERVICE: service}},
        "status": {"conditions": conditions},
    }


class ScriptedSource:
    """Answers list and watch calls from queues the test fills; records what was asked."""

    def __init__(self) -> None:
        self.lists: list[list[JobPage | Exception]] = []
        self.watches: list[list[dict] | Exception] = []
        self.list_calls: list[str | None] = []
        self.watch_calls: list[str] = []

    async def list_jobs(self, *, limit: int, continue_token: str | None) -> JobPage:
        self.list_calls.append(continue_token)
        answer = self.lists[0].pop(0)
        if not self.lists[0]:
            self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @asynccontextmanager
    async def watch_jobs(self, *, resource_version: str, timeout_seconds: int) -> AsyncIterator:
        self.watch_calls.append(resource_version)
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer

        async def events():
            for event in answer:
                if isinstance(event, Exception):  # the stream fails after the events before it
                    raise event
                yield event

        yield events()


@pytest.fixture
def no_sleep(monkeypatch):
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(informer_module.asyncio, "sleep", record)
    return slept


async def test_a_paged_list_then_watch_events_keep_the_counts(no_sleep):
    source = ScriptedSource()
    source.lists = [
        [
            JobPage([JobFacts("j1", "a", False)], "10", "page-2"),
            JobPage([JobFacts("j2", "a", False), JobFacts("j3", "b", True)], "10", None),
        ]
    ]
    source.watches = [
        [
            {"type": "ADDED", "object": obj("j4", "11", "b")},
            {"type": "MODIFIED", "object": obj("j1", "12", finished=True)},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
        ],
        [{"type": "DELETED", "object": obj("j2", "16")}],
    ]
    index = JobIndex()
    informer = JobInformer(source, index)
    await informer.run(max_cycles=3)
    assert source.list_calls == [None, "page-2"]
    assert source.watch_calls == ["10", "15"]  # the second watch resumes after the bookmark
    assert (index.active("a"), index.active("b")) == (0, 1)
    assert informer.synced.is_set()
    assert (informer.stats.lists, informer.stats.watches, informer.stats.events) == (1, 2, 4)
    assert no_sleep == []


async def test_410_as_an_answer_or_an_error_event_lists_again(no_sleep):
    source = ScriptedSource()
    source.lists = [
        [JobPage([JobFacts("j1", "a", False)], "10", None)],
        [JobPage([], "20", "more"), ResourceExpired("continue token expired")],
        [JobPage([JobFacts("j9", "a", False)], "30", None)],
    ]
    source.watches = [[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}]]
    index = JobIndex()
    informer = JobInformer(source, index)
    await informer.run(max_cycles=4)  # list, watch (410), list (expires mid-way), list again
    assert source.list_calls == [None, None, "more", None]
    assert informer.stats.expired == 2
    assert index.entry("j1") is None
    assert index.active("a") == 1
    assert no_sleep == []


async def test_errors_back_off_honouring_retry_after_and_resume_from_the_last_version(no_sleep):
    source = ScriptedSource()
    source.lists = [[TransientError("down", kind="api-5xx")], [JobPage([], "10", None)]]
    source.watches = [
        TransientError("throttled", kind="api-429", retry_after=7.0),
        [{"type": "ERROR", "object": {"code": 500, "message": "etcd", "details": {"retryAfterSeconds": 3}}}],
        PermanentError("forbidden", reason="forbidden"),
        [],
    ]
    informer = JobInformer(source, JobIndex(), backoff_base=0.1, backoff_cap=1.0)
    await informer.run(max_cycles=6)
    assert source.watch_calls == ["10", "10", "10", "10"]
    assert len(no_sleep) == 5  # the last, empty stream that ended at once backs off too
    assert no_sleep[1] >= 7.0  # Retry-After wins over the (smaller) jittered back-off
    assert no_sleep[2] >= 3.0
    assert all(delay <= 1.0 for delay in (no_sleep[0], no_sleep[3], no_sleep[4]))
    assert informer.stats.errors == 4


async def test_a_stalled_stream_is_watched_again_at_once_from_its_last_version_and_counted(no_sleep):
    source = ScriptedSource()
    source.lists = [[JobPage([], "10", None)]]
    source.watches = [
        [{"type": "ADDED", "object": obj("j1", "11")}, WatchStalled("watch Jobs: silent for 130 s")],
        [WatchStalled("watch Jobs: silent for 130 s")],  # silent from the start: still no relist
        [{"type": "ADDED", "object": obj("j2", "12")}],
    ]
    index = JobIndex()
    informer = JobInformer(source, index)
    await informer.run(max_cycles=4)
    assert source.list_calls == [None]  # no relist: nothing was lost, the resourceVersion still holds
    assert source.watch_calls == ["10", "11", "11"]
    assert no_sleep == []  # the silence itself took the read timeout: no back-off on top
    assert (informer.stats.stalled, informer.stats.errors, informer.stats.watches) == (2, 0, 3)
    assert index.active("a") == 2


async def test_start_and_stop_run_the_loop_as_a_named_task():
    source = ScriptedSource()
    blocked = asyncio.Event()

    async def list_forever(*, limit: int, continue_token: str | None) -> JobPage:
        blocked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    source.list_jobs = list_forever
    informer = JobInformer(source, JobIndex())
    informer.start()
    async with asyncio.timeout(1):
        await blocked.wait()
    assert informer.running
    assert "job informer" in {task.get_name() for task in asyncio.all_tasks()}
    await informer.stop()
    assert not informer.running
    await informer.stop()  # idempotent
