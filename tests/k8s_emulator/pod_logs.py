"""GET .../pods/{name}/log: the kubelet's log endpoint over the local runner's log files.

`tailLines`, `limitBytes`, `timestamps` and `follow` are honoured. The runner's files carry no
per-line times, so `timestamps=true` stamps every line with the file's last modification time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.k8s_emulator.clock import rfc3339_nano
from tests.k8s_emulator.errors import ApiError, bad_request
from tests.k8s_emulator.kubelet import Kubelet
from tests.k8s_emulator.requestinfo import is_true
from tests.k8s_emulator.resources import PODS
from tests.k8s_emulator.store import Store

_FOLLOW_POLL = 0.1


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


def format_log(text: str, *, tail_lines: int | None, limit_bytes: int | None, stamp: datetime | None) -> str:
    """Apply tailLines, then timestamps (*stamp* before each line), then limitBytes (pure)."""
    lines = text.splitlines(keepends=True)
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    if stamp is not None:
        prefix = rfc3339_nano(stamp) + " "
        lines = [prefix + line for line in lines]
    result = "".join(lines)
    if limit_bytes is not None:
        result = result.encode()[:limit_bytes].decode(errors="ignore")
    return result


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


def _read(path: Path | None) -> tuple[str, datetime | None]:
    if path is None or not path.exists():
        return "", None
    stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return path.read_bytes().decode(errors="replace"), stamp


async def serve_log(
    request: web.Request, store: Store, kubelet: Kubelet, namespace: str, name: str
) -> web.StreamResponse:
    """Answer a pod log request (plain text; a stream when follow=true)."""
    query = request.query
    pod = store.get(PODS.plural, namespace, name)
    if pod is None:
        raise ApiError(404, f'pods "{name}" not found', details={"name": name, "kind": "pods"})
    container = choose_container(pod, query.get("container"))
    if is_true(query.get("previous")):
        raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
    state = container_state(pod, container)
    if "running" not in state and "terminated" not in state:
        reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    tail_lines = _int_param(query, "tailLines", 0)
    limit_bytes = _int_param(query, "limitBytes", 1)
    timestamps = is_true(query.get("timestamps"))
    path = kubelet.log_file(pod["metadata"]["uid"], container)
    text, stamp = _read(path)
    body = format_log(
        text, tail_lines=tail_lines, limit_bytes=limit_bytes, stamp=stamp if timestamps else None
    )
    if not is_true(query.get("follow")) or "terminated" in state:
        return web.Response(text=body, content_type="text/plain")
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(body.encode())
    offset = len(text.encode())
    uid = pod["metadata"]["uid"]
    while True:
        await asyncio.sleep(_FOLLOW_POLL)
        current = store.get(PODS.plural, namespace, name)
        done = (
            current is None
            or current["metadata"]["uid"] != uid
            or "terminated" in container_state(current, container)
        )
        if path is not None and path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            if chunk:
                offset += len(chunk)
                text_chunk = chunk.decode(errors="replace")
                if timestamps:
                    text_chunk = format_log(
                        text_chunk, tail_lines=None, limit_bytes=None, stamp=datetime.now(UTC)
                    )
                await response.write(text_chunk.encode())
        if done:
            break
    await response.write_eof()
    return response
