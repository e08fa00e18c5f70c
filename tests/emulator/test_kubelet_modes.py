"""Kubelet modes: instant (no processes, exit code by annotation), off (pods stay Pending), bounded run."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly

from tests.emulator.helpers import condition, finished, job_body, job_pods, wait_for, watch_job_until_finished

pytestmark = pytest.mark.integration


async def test_instant_mode_finishes_pods_at_once_with_the_annotated_exit_code(api, namespace, control):
    control.set_kubelet("instant")
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("ok", "sleep 60"))
    await batch.create_namespaced_job(
        namespace, job_body("bad", "sleep 60", annotations={"emulator.bucketrun.io/exit-code": "5"})
    )
    ok, _ = await watch_job_until_finished(api, namespace, "ok", within=10)
    bad, _ = await watch_job_until_finished(api, namespace, "bad", within=10)
    assert finished(ok) == "Complete"
    assert finished(bad) == "Failed"
    (bad_pod,) = await job_pods(api, namespace, "bad")
    assert bad_pod["status"]["phase"] == "Failed"
    assert bad_pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 5
    (ok_pod,) = await job_pods(api, namespace, "ok")
    assert ok_pod["spec"]["nodeName"] == "emulator-node"
    assert await core.read_namespaced_pod_log(ok_pod["metadata"]["name"], namespace) == ""


async def test_off_mode_keeps_pods_pending_until_the_kubelet_comes_back(api, namespace, control):
    control.set_kubelet("off")
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("queued", "true"))

    async def pending_pod() -> dict | None:
        pods = await job_pods(api, namespace, "queued")
        return pods[0] if pods else None

    pod = await wait_for(pending_pod, what="the Job's pod")
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    job = api.sanitize_for_serialization(await batch.read_namespaced_job("queued", namespace))
    assert job["status"]["active"] == 1
    assert job["status"]["ready"] == 0
    assert control.state()["kubelet"]["pending"] >= 1
    control.set_kubelet("instant")
    job, _ = await watch_job_until_finished(api, namespace, "queued", within=10)
    assert finished(job) == "Complete"


async def test_run_mode_runs_at_most_max_running_pods_at_once(api, namespace, control):
    control.set_kubelet("run", max_running_pods=1)
    batch = client.BatchV1Api(api)
    for name in ("first", "second"):
        await batch.create_namespaced_job(namespace, job_body(name, "sleep 0.4"))

    async def one_running_one_waiting() -> tuple | None:
        pods = [p for name in ("first", "second") for p in await job_pods(api, namespace, name)]
        phases = sorted(p["status"]["phase"] for p in pods)
        unscheduled = [p for p in pods if "nodeName" not in p["spec"]]
        return (phases, unscheduled) if phases == ["Pending", "Running"] and len(unscheduled) == 1 else None

    await wait_for(one_running_one_waiting, what="one running and one waiting pod")
    assert control.state()["kubelet"]["running"] == 1
    for name in ("first", "second"):
        job, _ = await watch_job_until_finished(api, namespace, name, within=15)
        assert condition(job, "Complete")["status"] == "True"
