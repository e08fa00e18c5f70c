"""Containers that cannot be created wait as on a node: a missing Secret (CreateContainerConfigError) and
the image-pull fault (ErrImagePull, ImagePullBackOff) keep the pod Pending until the cause goes away."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly

from tests.emulator.helpers import finished, job_body, job_pods, wait_for, watch_job_until_finished

pytestmark = pytest.mark.integration

FAILING = "registry.invalid/*"


def with_secret_env(body: dict[str, Any]) -> dict[str, Any]:
    """*body* whose container reads T from Secret creds/token, beside a container that just succeeds."""
    pod = body["spec"]["template"]["spec"]
    pod["containers"][0]["env"] = [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}
    ]
    pod["containers"].append({"name": "beside", "image": "busybox:1.36", "command": ["true"]})
    return body


def waiting_of(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    for status in pod["status"].get("containerStatuses") or ():
        if status["name"] == name:
            waiting: dict[str, Any] | None = status["state"].get("waiting")
            return waiting
    return None


async def waiting_pod(api: client.ApiClient, namespace: str, job: str, reason: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        pods = await job_pods(api, namespace, job)
        found = pods and waiting_of(pods[0], "main")
        return pods[0] if found and found.get("reason") == reason else None

    return await wait_for(check, what=f"the pod's main container waiting with {reason}")


async def test_a_missing_secret_keeps_the_pod_pending_until_the_secret_exists(api, namespace, control):
    control.set_kubelet("run")
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(namespace, with_secret_env(job_body("needs-secret", 'echo "$T"')))

    pod = await waiting_pod(api, namespace, "needs-secret", "CreateContainerConfigError")
    assert pod["status"]["phase"] == "Pending"
    assert "secret 'creds' not found" in (waiting_of(pod, "main") or {})["message"]
    job = api.sanitize_for_serialization(await batch.read_namespaced_job("needs-secret", namespace))
    assert finished(job) is None  # no failure: it waits, as Kubernetes does

    secret = {"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"s3cr3t").decode()}}
    await core.create_namespaced_secret(namespace, secret)
    job, _ = await watch_job_until_finished(api, namespace, "needs-secret", within=15)
    assert finished(job) == "Complete"
    (pod,) = await job_pods(api, namespace, "needs-secret")
    log = await core.read_namespaced_pod_log(pod["metadata"]["name"], namespace, container="main")
    assert log == "s3cr3t\n"


async def test_the_image_pull_fault_keeps_a_container_waiting_until_it_is_cleared(api, namespace, control):
    control.set_kubelet("run", failing_images=[FAILING])
    assert control.state()["kubelet"]["failing_images"] == [FAILING]
    body = job_body("bad-image", "echo pulled")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/tools/upper:1.0"
    await client.BatchV1Api(api).create_namespaced_job(namespace, body)

    pod = await waiting_pod(api, namespace, "bad-image", "ImagePullBackOff")
    assert pod["status"]["phase"] == "Pending"
    assert (waiting_of(pod, "main") or {})[
        "message"
    ] == 'Back-off pulling image "registry.invalid/tools/upper:1.0"'

    control.set_kubelet(failing_images=[])
    job, _ = await watch_job_until_finished(api, namespace, "bad-image", within=15)
    assert finished(job) == "Complete"


async def test_instant_mode_holds_a_pod_whose_image_fails_and_reset_clears_the_fault(api, namespace, control):
    control.set_kubelet("instant", failing_images=[FAILING])
    batch = client.BatchV1Api(api)
    body = job_body("held", "true")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/x:1"
    await batch.create_namespaced_job(namespace, body)
    await batch.create_namespaced_job(namespace, job_body("fine", "true"))

    pod = await waiting_pod(api, namespace, "held", "ImagePullBackOff")
    assert (pod["status"]["phase"], pod["spec"]["nodeName"]) == ("Pending", "emulator-node")
    job, _ = await watch_job_until_finished(api, namespace, "fine", within=10)
    assert finished(job) == "Complete"

    control.reset()
    assert control.state()["kubelet"]["failing_images"] == []
