"""Manifests and bounded waits shared by the emulator's tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client, watch  # noqa: TID251 - these tests drive the API directly

T = TypeVar("T")


def job_body(
    name: str,
    script: str,
    *,
    backoff_limit: int = 0,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    out_volume: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    """A Job running `sh -c script` once (restartPolicy Never); *out_volume* adds an emptyDir at $OUT."""
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if out_volume:
        container["env"] = [{"name": "OUT", "value": "/out"}]
        container["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
        pod_spec["volumes"] = [{"name": "out", "emptyDir": {}}]
    template_meta: dict[str, Any] = {}
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"metadata": template_meta, "spec": pod_spec},
            **spec,
        },
    }


async def wait_for(
    check: Callable[[], Awaitable[T | None]], *, within: float = 15.0, what: str = "condition"
) -> T:
    """Poll *check* until it returns something other than None (or fail after *within* seconds)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of *type_* in a raw object, if any."""
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == type_:
            return dict(entry)
    return None


def finished(job: dict[str, Any]) -> str | None:
    """Which of Complete or Failed the Job has reached (that condition True), if any."""
    for type_ in ("Complete", "Failed"):
        found = condition(job, type_)
        if found is not None and found.get("status") == "True":
            return type_
    return None


async def watch_job_until_finished(
    api: client.ApiClient, namespace: str, name: str, *, within: float = 30.0
) -> tuple[dict[str, Any], list[str]]:
    """Watch one Job until it is Complete or Failed; returns its raw object and the event types seen."""
    batch = client.BatchV1Api(api)
    seen: list[str] = []
    async with asyncio.timeout(within), watch.Watch() as stream:
        async for event in stream.stream(
            batch.list_namespaced_job,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(within),
        ):
            seen.append(event["type"])
            if finished(event["raw_object"]):
                return event["raw_object"], seen
    raise AssertionError(f"the watch on Job {namespace}/{name} ended before it finished; events: {seen}")


async def job_pods(api: client.ApiClient, namespace: str, job: str) -> list[dict[str, Any]]:
    """The Job's pods as raw dicts (by the job-name label)."""
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}")
    return [api.sanitize_for_serialization(pod) for pod in listed.items]
