"""The Job controller and the kubelet through kubernetes_asyncio: real pods run by the local runner."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client, watch  # noqa: TID251 - these tests drive the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from tests.emulator.helpers import condition, finished, job_body, job_pods, wait_for, watch_job_until_finished
from tests.k8s_emulator.process import processes_under

pytestmark = pytest.mark.integration


def _terminated(pod: dict, container: str = "main") -> dict:
    for status in pod["status"].get("containerStatuses") or []:
        if status["name"] == container:
            return status["state"]["terminated"]
    raise AssertionError(f"no status for container {container} in {pod['status']}")


async def test_failing_job_reaches_failed_with_exit_code_3_in_the_pod_status(api, namespace, emulator):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(
        namespace, job_body("fails", "echo hi > $OUT/x; exit 3", out_volume=True, backoff_limit=0)
    )
    job, seen = await watch_job_until_finished(api, namespace, "fails")
    assert finished(job) == "Failed"
    assert seen[0] == "ADDED"
    failed = condition(job, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert condition(job, "FailureTarget")["status"] == "True"
    assert job["status"]["failed"] == 1
    assert "completionTime" not in job["status"]
    (pod,) = await job_pods(api, namespace, "fails")
    assert pod["status"]["phase"] == "Failed"
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    # The script really ran, with $OUT mapped onto the pod's emptyDir.
    written = list(emulator.state_dir.glob(f"pods/{namespace}/{pod['metadata']['name']}-*/volumes/out/x"))
    assert [path.read_text() for path in written] == ["hi\n"]


async def test_succeeding_job_reaches_complete(api, namespace):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("works", "echo done"))
    job, _ = await watch_job_until_finished(api, namespace, "works")
    assert finished(job) == "Complete"
    assert condition(job, "SuccessCriteriaMet")["status"] == "True"
    assert condition(job, "Complete")["reason"] == "CompletionsReached"
    assert job["status"]["succeeded"] == 1
    assert job["status"]["completionTime"] >= job["status"]["startTime"]
    assert "active" not in job["status"]
    (pod,) = await job_pods(api, namespace, "works")
    assert pod["status"]["phase"] == "Succeeded"
    assert _terminated(pod)["exitCode"] == 0
    assert _terminated(pod)["reason"] == "Completed"


async def test_job_pods_carry_the_controller_labels_owner_and_node(api, namespace):
    batch = client.BatchV1Api(api)
    created = await batch.create_namespaced_job(namespace, job_body("labelled", "true", labels={"app": "x"}))
    await watch_job_until_finished(api, namespace, "labelled")
    (pod,) = await job_pods(api, namespace, "labelled")
    uid = created.metadata.uid
    meta = pod["metadata"]
    assert meta["name"].startswith("labelled-")
    assert len(meta["name"]) == len("labelled-") + 5
    assert meta["labels"] == {
        "batch.kubernetes.io/job-name": "labelled",
        "job-name": "labelled",
        "batch.kubernetes.io/controller-uid": uid,
        "controller-uid": uid,
    }
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "labelled",
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pod["spec"]["nodeName"] == "emulator-node"
    assert pod["status"]["podIP"] == "127.0.0.1"
    types = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert types["PodScheduled"] == "True"
    assert types["Initialized"] == "True"
    assert types["Ready"] == "False"
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}


async def test_pod_phases_go_pending_running_succeeded_with_init_containers(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    body = job_body("phases", "sleep 0.5")
    body["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "prepare", "image": "busybox", "command": ["sh", "-c", "true"]}
    ]
    start = (await core.list_namespaced_pod(namespace)).metadata.resource_version
    await batch.create_namespaced_job(namespace, body)
    phases: list[str] = []
    ready_seen = False
    async with asyncio.timeout(20), watch.Watch() as stream:
        async for event in stream.stream(
            core.list_namespaced_pod,
            namespace,
            label_selector="job-name=phases",
            resource_version=start,
            timeout_seconds=20,
        ):
            status = event["raw_object"].get("status") or {}
            if not phases or phases[-1] != status.get("phase"):
                phases.append(status.get("phase"))
            ready_seen |= any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
            )
            if status.get("phase") == "Succeeded":
                pod = event["raw_object"]
                break
    assert phases == ["Pending", "Running", "Succeeded"]
    assert ready_seen
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert init["ready"] is True


async def test_backoff_limit_retries_with_new_pods(api, namespace):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("retries", "exit 1", backoff_limit=2))
    job, _ = await watch_job_until_finished(api, namespace, "retries")
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 3
    pods = await job_pods(api, namespace, "retries")
    assert len(pods) == 3
    assert {pod["status"]["phase"] for pod in pods} == {"Failed"}


async def test_pod_failure_policy_fail_job_stops_at_the_first_matching_exit_code(api, namespace):
    batch = client.BatchV1Api(api)
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        ]
    }
    await batch.create_namespaced_job(
        namespace, job_body("policy", "exit 42", backoff_limit=6, podFailurePolicy=policy)
    )
    job, _ = await watch_job_until_finished(api, namespace, "policy")
    failed = condition(job, "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert "exit code 42" in failed["message"]
    assert "rule at index 1" in failed["message"]
    assert len(await job_pods(api, namespace, "policy")) == 1


async def test_pod_failure_policy_ignore_replaces_the_pod_without_counting_it(api, namespace, tmp_path):
    batch = client.BatchV1Api(api)
    body = job_body(
        "flaky",
        'if [ -e "$M/seen" ]; then exit 0; fi; touch "$M/seen"; exit 7',
        backoff_limit=0,
        podFailurePolicy={"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]},
    )
    pod_spec = body["spec"]["template"]["spec"]
    pod_spec["volumes"] = [{"name": "marker", "hostPath": {"path": str(tmp_path)}}]
    pod_spec["containers"][0]["env"] = [{"name": "M", "value": "/marker"}]
    pod_spec["containers"][0]["volumeMounts"] = [{"name": "marker", "mountPath": "/marker"}]
    await batch.create_namespaced_job(namespace, body)
    job, _ = await watch_job_until_finished(api, namespace, "flaky")
    assert finished(job) == "Complete"
    assert "failed" not in job["status"]
    pods = await job_pods(api, namespace, "flaky")
    assert sorted(pod["status"]["phase"] for pod in pods) == ["Failed", "Succeeded"]


async def test_parallelism_and_completions(api, namespace):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("many", "true", completions=3, parallelism=2))
    job, _ = await watch_job_until_finished(api, namespace, "many")
    assert finished(job) == "Complete"
    assert job["status"]["succeeded"] == 3
    assert len(await job_pods(api, namespace, "many")) == 3


async def test_active_deadline_kills_the_processes_and_fails_the_job(api, namespace, emulator):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(
        namespace, job_body("slow", "echo started; sleep 30", activeDeadlineSeconds=1, backoff_limit=3)
    )
    job, _ = await watch_job_until_finished(api, namespace, "slow", within=20)
    failed = condition(job, "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "Job was active longer than specified deadline"
    (pod,) = await job_pods(api, namespace, "slow")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    disruption = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert disruption["status"] == "True"
    assert disruption["reason"] == "DeadlineExceeded"
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 128 + terminated["signal"]
    assert processes_under(emulator.state_dir / "pods" / namespace) == []


async def test_suspended_job_creates_no_pods_until_resumed(api, namespace):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("held", "true", suspend=True))

    async def suspended() -> dict | None:
        job = api.sanitize_for_serialization(await batch.read_namespaced_job("held", namespace))
        found = condition(job, "Suspended")
        return job if found and found["status"] == "True" else None

    job = await wait_for(suspended, what="the Suspended condition")
    assert condition(job, "Suspended")["reason"] == "JobSuspended"
    assert await job_pods(api, namespace, "held") == []
    assert "startTime" not in job["status"]
    await batch.patch_namespaced_job("held", namespace, {"spec": {"suspend": False}})
    job, _ = await watch_job_until_finished(api, namespace, "held")
    assert finished(job) == "Complete"
    resumed = condition(job, "Suspended")
    assert (resumed["status"], resumed["reason"]) == ("False", "JobResumed")
    assert job["status"]["startTime"]


async def test_suspending_a_running_job_deletes_its_pods(api, namespace):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("paused", "sleep 30"))

    async def running_pod() -> list | None:
        pods = await job_pods(api, namespace, "paused")
        return pods if pods and pods[0]["status"]["phase"] == "Running" else None

    await wait_for(running_pod, what="a running pod")
    await batch.patch_namespaced_job("paused", namespace, {"spec": {"suspend": True}})

    async def no_pods() -> bool | None:
        return True if await job_pods(api, namespace, "paused") == [] else None

    await wait_for(no_pods, what="the pods to be deleted")


async def test_ttl_seconds_after_finished_deletes_the_job_and_its_pods(api, namespace):
    batch = client.BatchV1Api(api)
    start = (await batch.list_namespaced_job(namespace)).metadata.resource_version
    await batch.create_namespaced_job(namespace, job_body("brief", "true", ttlSecondsAfterFinished=1))
    types = []
    async with asyncio.timeout(20), watch.Watch() as stream:
        async for event in stream.stream(
            batch.list_namespaced_job, namespace, resource_version=start, timeout_seconds=20
        ):
            types.append((event["type"], finished(event["raw_object"])))
            if event["type"] == "DELETED":
                break
    assert ("MODIFIED", "Complete") in types
    assert types[-1][0] == "DELETED"
    assert await job_pods(api, namespace, "brief") == []


async def test_pod_logs_with_tail_lines_and_container_choice_and_no_other_option(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(
        namespace, job_body("talks", "for i in 1 2 3 4 5; do echo line$i; done")
    )
    await watch_job_until_finished(api, namespace, "talks")
    (pod,) = await job_pods(api, namespace, "talks")
    name = pod["metadata"]["name"]
    assert await core.read_namespaced_pod_log(name, namespace) == "".join(f"line{i}\n" for i in range(1, 6))
    assert await core.read_namespaced_pod_log(name, namespace, tail_lines=2) == "line4\nline5\n"
    assert await core.read_namespaced_pod_log(name, namespace, tail_lines=0) == ""
    for asked in ({"timestamps": True}, {"follow": True}, {"limit_bytes": 3}):
        with pytest.raises(ApiException) as refused:
            await core.read_namespaced_pod_log(name, namespace, **asked)
        assert refused.value.status == 400
        assert "on pod logs is not emulated" in json.loads(refused.value.body)["message"]
    with pytest.raises(ApiException) as wrong:
        await core.read_namespaced_pod_log(name, namespace, container="nope")
    assert wrong.value.status == 400


async def test_pod_logs_need_a_container_name_when_there_are_several(api, namespace, control):
    control.set_kubelet("off")
    core = client.CoreV1Api(api)
    containers = [{"name": n, "image": "x", "command": ["true"]} for n in ("a", "b")]
    await core.create_namespaced_pod(
        namespace, {"metadata": {"name": "two"}, "spec": {"containers": containers}}
    )
    with pytest.raises(ApiException) as ambiguous:
        await core.read_namespaced_pod_log("two", namespace)
    assert ambiguous.value.status == 400
    assert (
        "a container name must be specified for pod two, choose one of: [a b]"
        in json.loads(ambiguous.value.body)["message"]
    )
    with pytest.raises(ApiException) as waiting:
        await core.read_namespaced_pod_log("two", namespace, container="a")
    assert waiting.value.status == 400
    assert "is waiting to start" in json.loads(waiting.value.body)["message"]


async def test_deleting_a_running_pod_kills_its_processes(api, namespace, emulator):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("victim", "sleep 30"))

    async def running() -> str | None:
        pods = await job_pods(api, namespace, "victim")
        return pods[0]["metadata"]["name"] if pods and pods[0]["status"]["phase"] == "Running" else None

    name = await wait_for(running, what="the pod to run")
    pod_dir = emulator.state_dir / "pods" / namespace
    assert processes_under(pod_dir)
    await batch.delete_namespaced_job("victim", namespace, propagation_policy="Background")

    async def gone() -> bool | None:
        return True if not processes_under(pod_dir) else None

    await wait_for(gone, what="the pod's processes to exit")
    with pytest.raises(ApiException) as deleted:
        await core.read_namespaced_pod_log(name, namespace)
    assert deleted.value.status == 404
