"""Log reads that keep failing (a dead node's kubelet answering 5xx) are given up after a bounded time:
the record is written with what was readable and says which logs are missing and why, and the
recording worker goes on to the next Job instead of retrying the first for ever."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.domain.jobs import is_recorded
from tests.integration.stack import until
from tests.integration.watcher_support import job_doc, new_env, watcher

pytestmark = [pytest.mark.integration]

LOG_READ_TIMEOUT = 1.0


@pytest.fixture
async def env(amqp_names, s3, kube, tmp_path):
    kube.require_control().set_kubelet("run")
    return await new_env(amqp_names, s3, kube, tmp_path)


async def _finished(env, count: int):
    jobs = await env.jobs()
    done = [job for job in jobs if (job.get("status") or {}).get("completionTime")]
    return jobs if len(done) == count else None


async def _all_marked(env):
    jobs = await env.jobs()
    return jobs if jobs and all(is_recorded(job) for job in jobs) else None


async def test_jobs_whose_log_reads_all_fail_are_recorded_in_bounded_time_naming_the_missing_logs(
    env, kube
) -> None:
    names = ["dead-node-a", "dead-node-b"]
    await env.create_jobs([job_doc(name, exit_code=0) for name in names])
    await until(lambda: _finished(env, len(names)), "both Jobs finished")
    control = kube.require_control()
    # Every log read fails (a Job's pods are listed, not got: only the log reads meet the faults).
    control.set_faults(error_rates={500: 0.5, 503: 0.5}, verbs=["get"], resources=["pods"], seed=7)
    control.reset_stats()
    # One worker: had it kept retrying the first Job's logs, the second Job would never be recorded.
    settings = env.with_watcher(concurrency=1, log_read_timeout=LOG_READ_TIMEOUT)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with watcher(settings):
        await until(lambda: _all_marked(env), "both Jobs recorded despite unreadable logs", within=30)
    took = loop.time() - started
    control.clear_faults()

    # Each record waited about one log-read budget (its logs are read together), plus a few requests.
    assert took < len(names) * LOG_READ_TIMEOUT + 10, took
    reads = control.request_count(verb="get", resource="pods", subresource="log")
    assert reads > len(names) * 2, reads  # retried (more tries than containers) …
    assert control.request_count(verb="get", resource="pods", subresource="log", code=200) == 0
    minio = env.s3.endpoint.client()
    for name in names:
        record = minio.get_object(env.records_bucket, f"records/upper/{name}/status.json").json()
        assert (record["outcome"], record["exit_code"]) == ("succeeded", 0)
        assert record["logs"] == {}
        assert set(record["logs_missing"]) == {"run", "stage-out"}
        for container, why in record["logs_missing"].items():
            assert why.startswith("unreadable: read the log of "), why
            assert f"container {container}: HTTP 50" in why, why
            assert f"in {LOG_READ_TIMEOUT:g} s)" in why, why
        # Neither the outputs manifest nor the stage-out log: the record says it knows no outputs.
        assert (record["outputs"], record["outputs_source"]) == ([], "missing")
    events = await until(lambda: _events(env, len(names)), "a completion event per Job")
    assert sorted(event["job"] for event in events) == names


async def _events(env, count: int):
    events = await env.drain_events()
    return events if len(events) >= count else None
