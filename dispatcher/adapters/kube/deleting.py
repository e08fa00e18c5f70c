"""Deleting: a Job with its pods (only the Job of a given UID), a ConfigMap, a Secret.

Each answers whether it removed something: an object already gone is False, not an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dispatcher.adapters.kube.api import KubeApi, raise_unless_ok


async def delete_job(api: KubeApi, name: str, uid: str) -> bool:
    """Delete Job *name* and its pods (propagationPolicy Background) if it is still the Job with UID
    *uid*; False when it is gone (404) or the name is another Job's now (409: the UID precondition)."""
    action = f"delete Job {api.namespace}/{name}"
    answer = await api.send(
        action,
        api.batch.delete_namespaced_job(
            name,
            api.namespace,
            body={"propagationPolicy": "Background", "preconditions": {"uid": uid}},
            _preload_content=False,
            _request_timeout=api.timeout,
        ),
    )
    if answer.status in (404, 409):
        return False
    raise_unless_ok(answer, action)
    return True


async def delete_config_map(api: KubeApi, name: str) -> bool:
    """Delete ConfigMap *name*; False when it did not exist. (A ``ConfigMapCreator`` that may ensure the
    name again must ``forget`` it first.)"""
    return await _delete_named(api, "ConfigMap", api.core.delete_namespaced_config_map, name)


async def delete_secret(api: KubeApi, name: str) -> bool:
    """Delete Secret *name*; False when it did not exist."""
    return await _delete_named(api, "Secret", api.core.delete_namespaced_secret, name)


async def _delete_named(api: KubeApi, kind: str, delete: Callable[..., Awaitable[Any]], name: str) -> bool:
    """Whether deleting the *kind* object *name* through the generated method *delete* removed
    something (False: there was nothing, 404)."""
    action = f"delete {kind} {api.namespace}/{name}"
    request = delete(name, api.namespace, _preload_content=False, _request_timeout=api.timeout)
    answer = await api.send(action, request)
    if answer.status == 404:
        return False
    raise_unless_ok(answer, action)
    return True
