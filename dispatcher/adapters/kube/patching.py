"""Patching: change what exists. Merge annotations into a Job (the watcher's recorded mark); create or
replace a service's Secret (``services apply``: no running component may write Secrets).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from dispatcher.adapters.kube.api import KubeApi, raise_unless_ok
from dispatcher.adapters.kube.errors import status_object
from dispatcher.domain import kube
from dispatcher.domain.constants import LABEL_MANAGED_BY, MANAGED_BY
from dispatcher.domain.errors import TransientError


async def annotate_job(api: KubeApi, name: str, annotations: Mapping[str, str]) -> bool:
    """Merge *annotations* into Job *name*'s metadata; False when the Job no longer exists."""
    action = f"annotate Job {api.namespace}/{name}"
    answer = await api.send(
        action,
        api.batch.patch_namespaced_job(
            name,
            api.namespace,
            {"metadata": {"annotations": dict(annotations)}},
            _content_type="application/merge-patch+json",
            _preload_content=False,
            _request_timeout=api.timeout,
        ),
    )
    if answer.status == 404:
        return False
    raise_unless_ok(answer, action)
    return True


async def ensure_secret(
    api: KubeApi, name: str, data: Mapping[str, str | bytes], *, labels: Mapping[str, str] | None = None
) -> bool:
    """Create Secret *name* holding *data*, or replace it when its data differ or it lacks one of the
    labels; True if it changed. A Secret changed by someone else between the read and the replace is a
    ``TransientError``: try again."""
    encoded = {key: _b64(value) for key, value in data.items()}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY, **(labels or {})}},
        "data": encoded,
    }
    where = f"Secret {api.namespace}/{name}"
    created = await api.send(
        f"create {where}",
        api.core.create_namespaced_secret(
            api.namespace, body, _preload_content=False, _request_timeout=api.timeout
        ),
    )
    if created.status != 409:
        raise_unless_ok(created, f"create {where}")
        return True
    current = await api.send(
        f"read {where}",
        api.core.read_namespaced_secret(
            name, api.namespace, _preload_content=False, _request_timeout=api.timeout
        ),
    )
    raise_unless_ok(current, f"read {where}")
    existing = status_object(current.body)
    labelled = body["metadata"]["labels"].items() <= kube.labels(existing).items()
    if (existing.get("data") or {}) == encoded and labelled:
        return False
    version = kube.meta(existing).get("resourceVersion")
    body["metadata"] = {**body["metadata"], "resourceVersion": version}
    replaced = await api.send(
        f"replace {where}",
        api.core.replace_namespaced_secret(
            name, api.namespace, body, _preload_content=False, _request_timeout=api.timeout
        ),
    )
    if replaced.status == 409:
        raise TransientError(f"replace {where}: changed by someone else meanwhile", kind="api-conflict")
    raise_unless_ok(replaced, f"replace {where}")
    return True


def _b64(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")
