"""GET .../pods/{name}/log: the kubelet's log endpoint over the local runner's log files.

`container` and `tailLines` are honoured (all bucketrun asks for); `follow`, `timestamps`, `limitBytes`
and `previous` are refused with 400 (the real control plane's node agent serves them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.k8s_emulator.errors import ApiError, bad_request
from tests.k8s_emulator.kubelet import Kubelet
from tests.k8s_emulator.resources import PODS
from tests.k8s_emulator.store import Store


def choose_container(pod: Mapping[str, Any], requested: str | None) -> str:
    """The container whose log is wanted: the named one, or the only one; 400 as the apiserver words it."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    containers = [str(c.get("name")) for c in spec.get("containers") or []]
    init_containers = [str(c.get("name")) for c in spec.get("initContainers") or []]
    if requested:
        if requested not in containers and requested not in init_containers:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init_containers:
        message += f" or one of the init containers: [{' '.join(init_containers)}]"
    raise bad_request(message)


def container_state(pod: Mapping[str, Any], container: str) -> dict[str, Any]:
    """The container's `state` from the pod status ({} when it has none yet)."""
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == container:
            return dict(entry.get("state") or {})
    return {}


def tail(text: str, tail_lines: int | None) -> str:
    """The last *tail_lines* lines of *text* (all of it when None; pure)."""
    if tail_lines is None:
        return text
    return "".join(text.splitlines(keepends=True)[-tail_lines:]) if tail_lines > 0 else ""


def _int_param(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise bad_request(f"{key} must be at least {minimum}, got {value}")
    return value


def _read(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_bytes().decode(errors="replace")


_NOT_EMULATED = ("follow", "timestamps", "limitBytes", "previous")


async def serve_log(
    request: web.Request, store: Store, kubelet: Kubelet, namespace: str, name: str
) -> web.StreamResponse:
    """Answer a pod log request (plain text)."""
    query = request.query
    pod = store.get(PODS.plural, namespace, name)
    if pod is None:
        raise ApiError(404, f'pods "{name}" not found', details={"name": name, "kind": "pods"})
    container = choose_container(pod, query.get("container"))
    asked = [key for key in _NOT_EMULATED if key in query]
    if asked:
        raise bad_request(f"{', '.join(asked)} on pod logs is not emulated")
    state = container_state(pod, container)
    if "running" not in state and "terminated" not in state:
        reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    text = _read(kubelet.log_file(pod["metadata"]["uid"], container))
    return web.Response(text=tail(text, _int_param(query, "tailLines", 0)), content_type="text/plain")
