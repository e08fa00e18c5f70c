"""The watcher on real servers (RabbitMQ, S3, the Kubernetes API): finished Jobs become records,
completion events and a recorded mark; a records location overlapping an input is refused."""

from __future__ import annotations

import asyncio
import io
import json
import re
from functools import partial

import pytest

from bucketrun.cli.jobs import job_logs, list_jobs, show_job
from bucketrun.serve import run_serve
from dispatcher.domain.constants import ANNOTATION_RECORDED
from dispatcher.domain.errors import StartupError
from dispatcher.domain.jobs import finished_condition, is_recorded
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.runtime.metrics import new_registry
from tests.integration.stack import started, until
from tests.integration.watcher_support import job_doc, new_env, watcher
from tests.metric_labels import unbounded_labels
from watcher.app import WatcherState, run_watcher

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def env(amqp_names, s3, kube, tmp_path):
    kube.require_control().set_kubelet("run")
    return await new_env(amqp_names, s3, kube, tmp_path)


async def test_finished_jobs_are_recorded_published_and_marked(env) -> None:
    held = job_doc("held-job", service="lower")
    held["spec"]["suspend"] = True  # no pod while the test runs: unfinished throughout
    await env.create_jobs([job_doc("ok-job", exit_code=0), job_doc("bad-job", exit_code=1), held])
    registry = new_registry("watcher")
    async with started(partial(run_watcher, env.settings, registry=registry), "watcher"):

        async def both_marked():
            jobs = await env.jobs()
            marked = [j for j in jobs if (j["metadata"].get("annotations") or {}).get(ANNOTATION_RECORDED)]
            return marked if len(marked) == 2 else None

        jobs = await until(both_marked, "both Jobs marked recorded")
        # The leader's watch counts the unfinished Jobs: every loaded service, and any other with some.
        running = {
            service: registry.get_sample_value("bucketrun_running_jobs", {"service": service})
            for service in ("upper", "lower")
        }
        assert running == {"upper": 0.0, "lower": 1.0}
    uids = {job["metadata"]["name"]: job["metadata"]["uid"] for job in jobs}
    for job in jobs:
        assert job["metadata"]["annotations"][ANNOTATION_RECORDED] == job["metadata"]["uid"]

    versions = env.record_versions()
    assert {uid: len(keys) for uid, keys in versions.items()} == dict.fromkeys(uids.values(), 1)
    minio = env.s3.endpoint.client()
    ok = minio.get_object(env.records_bucket, "records/upper/ok-job/status.json").json()
    bad = minio.get_object(env.records_bucket, "records/upper/bad-job/status.json").json()
    assert (ok["outcome"], ok["exit_code"], ok["uid"]) == ("succeeded", 0, uids["ok-job"])
    assert (bad["outcome"], bad["exit_code"], bad["reason"]) == ("failed", 1, "ScriptFailed")
    assert (ok["service"], ok["bucket"], ok["key"], ok["version"]) == (
        "upper",
        "photos",
        "in/photo.txt",
        "v1",
    )
    assert ok["outputs"] == [{"bucket": "outputs", "key": "out/ok-job.txt"}]
    assert all(ok[moment] for moment in ("created", "started", "finished"))
    log = minio.get_object(env.records_bucket, "records/upper/bad-job/logs/run.log").data.decode()
    assert log == "running bad-job\n"
    assert ok["logs"]["run"] == "records/upper/ok-job/logs/run.log"

    events = await until(lambda: _at_least(env, 2), "two completion events on the results exchange")
    assert sorted(event["uid"] for event in events) == sorted(uids.values())
    assert {event["job"]: event["outcome"] for event in events} == {
        "ok-job": "succeeded",
        "bad-job": "failed",
    }
    assert registry.get_sample_value("bucketrun_records_written_total") == 2
    assert unbounded_labels(registry, [*uids, *uids.values(), "in/photo.txt", "out/ok-job.txt"]) == []


async def test_a_record_already_stored_for_the_job_s_uid_is_published_never_rewritten(env) -> None:
    """A watcher that stored the record but died before marking the Job: the next one publishes that
    record as it is, and writes nothing (one version of status.json, the stored content in the event)."""
    await env.create_jobs([job_doc("stored-job", exit_code=0)])
    await until(lambda: _finished(env), "the Job finished")
    (job,) = await env.jobs()
    stored = {"uid": job["metadata"]["uid"], "job": "stored-job", "service": "upper", "outcome": "stored"}
    body = json.dumps(stored).encode()
    env.s3.endpoint.client().put_object(
        env.records_bucket, "records/upper/stored-job/status.json", io.BytesIO(body), len(body)
    )
    async with watcher(env.settings):
        await until(lambda: _all_marked(env), "the Job marked recorded")
    assert {uid: len(keys) for uid, keys in env.record_versions().items()} == {stored["uid"]: 1}
    events = await until(lambda: _at_least(env, 1), "the completion event")
    assert [(event["uid"], event["outcome"]) for event in events] == [(stored["uid"], "stored")]


async def test_a_jobs_container_logs_are_read_together(env, kube) -> None:
    # Every API answer takes 150 ms, so reads sent one after the other never overlap; the emulator
    # counts how many log reads were in progress at once.
    await env.create_jobs([job_doc("two-logs", exit_code=0)])
    control = kube.require_control()
    await until(lambda: _finished(env), "the Job finished")
    control.set_faults(latency=0.15)
    control.reset_stats()
    async with watcher(env.settings):
        jobs = await until(lambda: _all_marked(env), "the Job marked recorded")
    control.clear_faults()
    assert control.request_count(verb="get", resource="pods", subresource="log") == 2
    assert control.peak_in_flight(verb="get", resource="pods", subresource="log") == 2
    minio = env.s3.endpoint.client()
    record = minio.get_object(env.records_bucket, "records/upper/two-logs/status.json").json()
    assert record["uid"] == jobs[0]["metadata"]["uid"]
    assert list(record["logs"]) == ["run", "stage-out"]
    log = minio.get_object(env.records_bucket, "records/upper/two-logs/logs/run.log").data.decode()
    assert log == "running two-logs\n"


async def _finished(env):
    jobs = await env.jobs()
    return jobs if jobs and all((job.get("status") or {}).get("completionTime") for job in jobs) else None


async def _all_marked(env):
    jobs = await env.jobs()
    return jobs if jobs and all(is_recorded(job) for job in jobs) else None


async def _at_least(env, count: int):
    events = await env.drain_events()
    return events if len(events) >= count else None


async def test_a_records_location_overlapping_an_input_is_refused_naming_the_service(env) -> None:
    inputs_bucket = env.settings.services.paths[0].read_text().split("path: ")[1].split("/")[0]
    settings = env.settings.model_copy(
        update={
            "storage": env.settings.storage.model_copy(
                update={"records_bucket": inputs_bucket, "records_prefix": "in/records/"}
            )
        }
    )
    with pytest.raises(StartupError, match=r"service 'upper' input '.*/in'"):
        await asyncio.wait_for(run_watcher(settings, asyncio.Event()), 10)
    # The whole bucket as records location overlaps too; another folder does not.
    whole = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"records_prefix": ""})}
    )
    with pytest.raises(StartupError, match="upper"):
        await asyncio.wait_for(run_watcher(whole, asyncio.Event()), 10)


async def test_jobs_show_list_and_logs_read_the_cluster_then_the_records_after_deletion(env) -> None:
    await env.create_jobs([job_doc("shown-job", exit_code=1)])
    async with watcher(env.settings):

        async def marked():
            jobs = await env.jobs()
            return jobs if jobs and is_recorded(jobs[0]) else None

        jobs = await until(marked, "the Job marked recorded")
    uid = jobs[0]["metadata"]["uid"]
    text, code = await show_job(env.settings, "shown-job")
    assert code == 0
    assert (json.loads(text)["uid"], json.loads(text)["outcome"]) == (uid, "failed")
    text, code = await job_logs(env.settings, "shown-job", "run")
    assert (text, code) == ("running shown-job", 0)

    await env.delete_job("shown-job")
    await until(lambda: _gone(env), "the Job deleted")
    text, code = await show_job(env.settings, "shown-job")
    shown = json.loads(text)
    assert code == 0
    assert (shown["uid"], shown["outcome"], shown["exit_code"]) == (uid, "failed", 1)
    assert await job_logs(env.settings, "shown-job") == ("running shown-job", 0)
    text, code = await job_logs(env.settings, "shown-job", all_containers=True)
    assert code == 0
    assert "==> run <==\nrunning shown-job" in text
    listing, code = await list_jobs(env.settings)
    assert code == 0
    assert re.search(r"^shown-job\s+upper\s+failed\s.*\srecord$", listing, re.MULTILINE), listing
    assert (await show_job(env.settings, "no-such-job"))[1] == 1


async def _gone(env) -> bool:
    return not await env.jobs()


async def test_local_jobs_that_finished_before_a_crash_are_recorded_after_the_restart(env, tmp_path) -> None:
    """`serve` killed between a Job's end and its record: the next start records it, exactly once."""
    settings = env.settings.model_copy(
        update={
            "cluster": env.settings.cluster.model_copy(
                update={"executor": "local", "local_state_dir": tmp_path / "state"}
            )
        }
    )
    names = ("crashed-0", "crashed-1")
    before = LocalExecutor(tmp_path / "state", max_running=2)
    await before.start()
    for name in names:
        await before.create_job(job_doc(name))

    async def both_finished():
        return all(finished_condition(before.job_status(name)["job"]) for name in names)

    await until(both_finished, "both local Jobs finished")
    await before.close()  # the process is gone before its watcher recorded them

    for attempt in range(2):  # the second start finds both marked: nothing is recorded again
        executor = LocalExecutor(tmp_path / "state", max_running=2)
        await executor.start()
        try:
            assert executor.unrecorded == (names if attempt == 0 else ())
            async with started(partial(run_watcher, settings, executor=executor), "watcher"):

                async def both_marked(executor=executor):
                    return all(is_recorded(executor.job_status(name)["job"]) for name in names)

                await until(both_marked, "both Jobs recorded and marked")
        finally:
            await executor.close()
    versions = env.record_versions()
    assert sorted(len(keys) for keys in versions.values()) == [1, 1]
    events = await until(lambda: _at_least(env, 2), "two completion events")
    assert sorted(event["job"] for event in events) == list(names)


async def test_serve_runs_dispatcher_and_watcher_on_one_local_executor_and_stops_cleanly(
    env, tmp_path
) -> None:
    settings = env.settings.model_copy(
        update={
            "cluster": env.settings.cluster.model_copy(
                update={"executor": "local", "local_state_dir": tmp_path / "state"}
            )
        }
    )
    state = WatcherState()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_serve(settings, stop, ready, state=state))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set()
    assert isinstance(state.recorder.executor, LocalExecutor)
    assert state.elector is None  # no election with the local executor
    stop.set()
    await asyncio.wait_for(task, 30)
    assert not ready.is_set()
