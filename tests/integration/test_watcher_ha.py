"""The watcher through restarts, expired and dropped watches, and two replicas on one Lease:
every finished Job is recorded (one record write, one event) exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest

from dispatcher.domain.constants import ANNOTATION_RECORDED
from dispatcher.domain.errors import TransientError
from tests.integration.stack import until
from tests.integration.watcher_support import job_doc, new_env, watcher
from watcher.app import WatcherState

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def env(amqp_names, s3, kube, tmp_path):
    kube.require_control().set_kubelet("run")
    return await new_env(amqp_names, s3, kube, tmp_path)


def _staggered(prefix: str, count: int) -> list[dict]:
    docs = []
    for index in range(count):
        doc = job_doc(f"{prefix}-{index}", exit_code=index % 3 == 0)
        run = doc["spec"]["template"]["spec"]["containers"][0]
        run["command"] = ["sh", "-c", f"sleep {0.1 * (index % 6)}; echo {index}; exit {index % 3 == 0:d}"]
        docs.append(doc)
    return docs


async def _all_marked(env, count: int):
    jobs = await env.jobs()
    marked = [j for j in jobs if (j["metadata"].get("annotations") or {}).get(ANNOTATION_RECORDED)]
    return jobs if len(marked) == count else None


def _assert_exactly_once(env, jobs, events) -> None:
    uids = sorted(job["metadata"]["uid"] for job in jobs)
    versions = env.record_versions()
    assert sorted(versions) == uids
    assert all(len(keys) == 1 for keys in versions.values()), versions
    per_uid = Counter(event["uid"] for event in events)
    assert sorted(per_uid) == uids
    assert set(per_uid.values()) == {1}, per_uid


async def test_killed_restarted_expired_and_dropped_watches_record_each_job_exactly_once(env) -> None:
    control = env.kube.require_control()
    count = 18
    await env.create_jobs(_staggered("restart", count))
    first = WatcherState()
    async with watcher(env.settings, first) as task:
        await until(lambda: _some_handled(first, 3), "a few Jobs recorded by the first watcher")
        task.cancel()  # abrupt: no stop request, no drain of queued Jobs
        with contextlib.suppress(asyncio.CancelledError):
            await task
    control.expire_next_watch()
    second = WatcherState()
    async with watcher(env.settings, second):
        await until(lambda: _watching(second), "the second watcher watching")
        control.drop_watches()
        control.expire_next_watch()
        control.drop_watches()
        jobs = await until(lambda: _all_marked(env, count), f"all {count} Jobs marked recorded")
    assert second.watch is None  # the term ended with the stop
    events = await until(lambda: _events(env, count), f"{count} completion events")
    _assert_exactly_once(env, jobs, events)


async def _some_handled(state: WatcherState, count: int) -> bool:
    return state.recorder is not None and state.recorder.stats.recorded >= count


async def _watching(state: WatcherState) -> bool:
    return state.watch is not None and state.watch.stats.watches >= 1


async def _events(env, count: int):
    events = await env.drain_events()
    return events if len(events) >= count else None


async def test_two_watchers_on_one_lease_only_the_leader_records_and_the_other_takes_over(env) -> None:
    state_a, state_b = WatcherState(), WatcherState()
    settings_b = env.with_watcher(identity="watcher-b")
    await env.create_jobs(_staggered("ha-first", 6))
    async with watcher(env.settings, state_a) as task_a, watcher(settings_b, state_b):
        jobs = await until(lambda: _all_marked(env, 6), "the first Jobs recorded")
        leaders = [state for state in (state_a, state_b) if state.elector and state.elector.is_leader]
        assert len(leaders) == 1
        follower = state_b if leaders[0] is state_a else state_a
        assert follower.recorder is not None
        assert follower.recorder.stats.recorded == 0
        assert follower.watch is None  # a standby does not even watch Jobs
        assert leaders[0] is state_a, "A started first and holds the Lease"

        task_a.cancel()  # the leader goes away
        with contextlib.suppress(asyncio.CancelledError):
            await task_a
        started = time.monotonic()
        assert state_b.elector is not None
        async with asyncio.timeout(env.settings.watcher.lease_duration + 3):
            await state_b.elector.leading.wait()
        took = time.monotonic() - started

        await env.create_jobs(_staggered("ha-second", 4))
        jobs = await until(lambda: _all_marked(env, 10), "the later Jobs recorded by the new leader")
    assert took < env.settings.watcher.lease_duration + 1
    assert state_b.recorder is not None
    assert state_b.recorder.stats.recorded == 4
    events = await until(lambda: _events(env, 10), "10 completion events")
    _assert_exactly_once(env, jobs, events)


async def test_a_cut_off_leader_steps_down_and_the_standby_takes_over_once_the_lease_expires(env) -> None:
    """A leader that can no longer reach the Lease (partitioned, frozen) never releases it: it must step
    down by itself before the Lease expires, and the standby takes over only after it expired."""
    state_a, state_b = WatcherState(), WatcherState()
    async with watcher(env.settings, state_a):
        await until(lambda: _leading(state_a), "A leading")
        async with watcher(env.with_watcher(identity="watcher-b"), state_b):
            assert not await _leading(state_b)
            cut_at = time.monotonic()
            _cut_off(state_a)
            await until(lambda: _not_leading(state_a), "A stepping down", within=5)
            stepped_down = time.monotonic() - cut_at
            await until(lambda: _leading(state_b), "B leading", within=10)
            took_over = time.monotonic() - cut_at
            await env.create_jobs(_staggered("after-cut", 3))
            await until(lambda: _all_marked(env, 3), "the new leader recording")
    duration = env.settings.watcher.lease_duration
    assert stepped_down < duration, stepped_down
    assert duration * 0.8 <= took_over < duration + 2, took_over
    assert state_b.recorder is not None
    assert state_b.recorder.stats.recorded == 3


def _cut_off(state: WatcherState) -> None:
    """A's Lease calls fail from now on, as for a replica cut off from the API server."""
    assert state.elector is not None

    async def unreachable(*_args, **_kwargs):
        raise TransientError("the API server is unreachable (test)", kind="api-connection")

    api = state.elector._api
    api.read_lease = unreachable
    api.replace_lease = unreachable
    api.create_lease = unreachable


async def _not_leading(state: WatcherState) -> bool:
    return state.elector is not None and not state.elector.is_leader


async def _leading(state: WatcherState) -> bool:
    return state.elector is not None and state.elector.is_leader
