"""The watcher on real servers (RabbitMQ, S3, the Kubernetes API): finished Jobs become records,
completion events and a recorded mark; a records location overlapping an input is refused."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.app import StartupError
from dispatcher.constants import ANNOTATION_RECORDED
from tests.integration.watcher_support import job_doc, new_env, until, watcher
from watcher.app import run_watcher

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def env(amqp_names, s3, kube, tmp_path):
    kube.require_control().set_kubelet("run")
    return await new_env(amqp_names, s3, kube, tmp_path)


async def test_finished_jobs_are_recorded_published_and_marked(env) -> None:
    await env.create_jobs([job_doc("ok-job", exit_code=0), job_doc("bad-job", exit_code=1)])
    async with watcher(env.settings):

        async def both_marked():
            jobs = await env.jobs()
            marked = [j for j in jobs if (j["metadata"].get("annotations") or {}).get(ANNOTATION_RECORDED)]
            return jobs if len(marked) == 2 else None

        jobs = await until(both_marked, "both Jobs marked recorded")
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
