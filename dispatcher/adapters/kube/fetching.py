"""Fetching: read one object, list (every page, or one page of Jobs; Events too), read a pod's log,
probe the API.

A read of an object that does not exist is None, not an error; lists come back as the API sent the
items. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dispatcher.adapters.kube.api import MANAGED_SELECTOR, KubeApi, raise_unless_ok
from dispatcher.adapters.kube.errors import status_object
from dispatcher.adapters.kube.list_watch import PAGE_SIZE, ResourceExpired
from dispatcher.domain import kube
from dispatcher.domain.constants import LABEL_JOB_CONTROLLER_UID
from dispatcher.domain.errors import BucketrunError, TransientError
from dispatcher.domain.refused import FAILED_CREATE


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of a list, with the objects as the API sent them."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None


async def read_object(api: KubeApi, action: str, request: Awaitable[Any]) -> dict[str, Any] | None:
    """The object a GET *request* answers, or None when there is none (404)."""
    answer = await api.send(action, request)
    if answer.status == 404:
        return None
    raise_unless_ok(answer, action)
    return status_object(answer.body)


async def read_named(
    api: KubeApi, kind: str, read: Callable[..., Awaitable[Any]], name: str
) -> dict[str, Any] | None:
    """The *kind* object *name* of the namespace through the generated method *read*
    (``read_namespaced_…``), or None when there is none."""
    request = read(name, api.namespace, _preload_content=False, _request_timeout=api.timeout)
    return await read_object(api, f"read {kind} {api.namespace}/{name}", request)


async def read_job(api: KubeApi, name: str) -> dict[str, Any] | None:
    """Job *name* as the API has it, or None when there is no such Job."""
    return await read_named(api, "Job", api.batch.read_namespaced_job, name)


async def read_config_map(api: KubeApi, name: str) -> dict[str, Any] | None:
    """ConfigMap *name* as the API has it, or None when there is none."""
    return await read_named(api, "ConfigMap", api.core.read_namespaced_config_map, name)


async def read_secret(api: KubeApi, name: str) -> dict[str, Any] | None:
    """Secret *name* as the API has it, values included (never log it), or None when there is none."""
    return await read_named(api, "Secret", api.core.read_namespaced_secret, name)


async def list_all(
    api: KubeApi, action: str, list_page: Callable[..., Any], **query: Any
) -> list[dict[str, Any]]:
    """Every item of a namespaced list, page after page (``PAGE_SIZE`` a page), as the API sent them."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        answer = await api.send(
            action,
            list_page(
                api.namespace,
                limit=PAGE_SIZE,
                _continue=token,
                _preload_content=False,
                _request_timeout=api.timeout,
                **query,
            ),
        )
        raise_unless_ok(answer, action)
        listing = status_object(answer.body)
        items = listing.get("items")
        found += [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
        token = kube.list_meta(listing).get("continue") or None
        if token is None:
            return found


async def list_config_maps(api: KubeApi, label_selector: str = MANAGED_SELECTOR) -> list[dict[str, Any]]:
    """The namespace's ConfigMaps matching *label_selector* (default: bucketrun's), all pages."""
    return await list_all(
        api,
        f"list ConfigMaps in {api.namespace}",
        api.core.list_namespaced_config_map,
        label_selector=label_selector,
    )


async def list_jobs(api: KubeApi) -> list[dict[str, Any]]:
    """bucketrun's Jobs in the namespace, every page, as the API sent them."""
    return await list_all(
        api, f"list Jobs in {api.namespace}", api.batch.list_namespaced_job, label_selector=MANAGED_SELECTOR
    )


async def list_job_pods(api: KubeApi) -> list[dict[str, Any]]:
    """The namespace's pods that a Job created (they carry the controller-uid label), every page. By
    that label rather than bucketrun's: a pod template an operator overrode may not carry bucketrun's."""
    return await list_all(
        api,
        f"list the pods of Jobs in {api.namespace}",
        api.core.list_namespaced_pod,
        label_selector=LABEL_JOB_CONTROLLER_UID,
    )


async def list_job_documents(api: KubeApi, *, limit: int, continue_token: str | None) -> DocumentPage:
    """One page of bucketrun's Jobs in the namespace as the API sent them; ``ResourceExpired`` on 410."""
    action = f"list Jobs in {api.namespace}"
    answer = await api.send(
        action,
        api.batch.list_namespaced_job(
            api.namespace,
            label_selector=MANAGED_SELECTOR,
            limit=limit,
            _continue=continue_token,
            _preload_content=False,
            _request_timeout=api.timeout,
        ),
    )
    if answer.status == 410:
        raise ResourceExpired(f"{action}: continue token expired")
    raise_unless_ok(answer, action)
    listing = status_object(answer.body)
    metadata = kube.list_meta(listing)
    items = listing.get("items")
    version = metadata.get("resourceVersion")
    if not isinstance(items, list) or not isinstance(version, str):
        raise TransientError(f"{action}: the answer is not a Job list", kind="api-5xx")
    return DocumentPage(
        [item for item in items if isinstance(item, dict)], version, metadata.get("continue") or None
    )


async def job_pods(api: KubeApi, job_uid: str) -> list[dict[str, Any]]:
    """The pods the Job with UID *job_uid* created (by the controller-uid label), oldest first."""
    action = f"list pods of Job {job_uid} in {api.namespace}"
    answer = await api.send(
        action,
        api.core.list_namespaced_pod(
            api.namespace,
            label_selector=f"{LABEL_JOB_CONTROLLER_UID}={job_uid}",
            _preload_content=False,
            _request_timeout=api.timeout,
        ),
    )
    raise_unless_ok(answer, action)
    items = status_object(answer.body).get("items")
    pods = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    return sorted(pods, key=lambda pod: str(kube.meta(pod).get("creationTimestamp", "")))


async def pending_pods(api: KubeApi) -> list[dict[str, Any]]:
    """bucketrun's pods in phase Pending (waiting to be scheduled, or a container waiting to start),
    every page: where the watcher looks for pods that can never start."""
    return await list_all(
        api,
        f"list pending pods in {api.namespace}",
        api.core.list_namespaced_pod,
        label_selector=MANAGED_SELECTOR,
        field_selector="status.phase=Pending",
    )


async def refused_job_events(api: KubeApi) -> list[dict[str, Any]]:
    """The namespace's ``FailedCreate`` Events about Jobs (the Job controller's, when the API server
    refuses a pod), every page: where the watcher looks for Jobs that can never get a pod. Any Job's
    (Events carry no labels): the caller keeps bucketrun's."""
    return await list_all(
        api,
        f"list the FailedCreate Events of Jobs in {api.namespace}",
        api.core.list_namespaced_event,
        field_selector=f"involvedObject.kind=Job,reason={FAILED_CREATE}",
    )


async def job_events(api: KubeApi, job_uid: str) -> list[dict[str, Any]]:
    """Every Event about the Job with UID *job_uid* still kept by the API server (an hour by default)."""
    return await list_all(
        api,
        f"list the Events of Job {job_uid} in {api.namespace}",
        api.core.list_namespaced_event,
        field_selector=f"involvedObject.kind=Job,involvedObject.uid={job_uid}",
    )


async def pod_log(api: KubeApi, pod: str, container: str, *, tail_lines: int | None = None) -> str | None:
    """The last *tail_lines* lines of *container*'s log in *pod*; None when the pod is gone or the
    container never started (the API then has no log to give)."""
    action = f"read the log of {api.namespace}/{pod} container {container}"
    answer = await api.send(
        action,
        api.core.read_namespaced_pod_log(
            pod,
            api.namespace,
            container=container,
            tail_lines=tail_lines,
            _preload_content=False,
            _request_timeout=api.timeout,
        ),
    )
    if answer.status in (400, 404):
        return None
    raise_unless_ok(answer, action)
    return answer.body.decode("utf-8", "replace")


async def api_answers(api: KubeApi) -> bool:
    """True when the API answers a one-item list of bucketrun's Jobs in the namespace in time (for
    readiness probes). Never raises (but a cancellation)."""
    try:
        answer = await api.send(
            f"list Jobs in {api.namespace}",
            api.batch.list_namespaced_job(
                api.namespace,
                limit=1,
                label_selector=MANAGED_SELECTOR,
                _preload_content=False,
                _request_timeout=api.timeout,
            ),
        )
    except BucketrunError:
        return False
    return 200 <= answer.status < 300
