"""The downward API: pod fields (`fieldRef`) and container resources (`resourceFieldRef`) as strings."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from dispatcher.domain.quantity import divide_up

# Every local pod lives on this host; Kubernetes would report the pod's and the node's addresses.
LOCAL_IP = "127.0.0.1"

_SUBSCRIPT = re.compile(r"metadata\.(?P<map>labels|annotations)\['(?P<key>[^']*)'\]")
_SCALAR_PATHS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.podIPs",
        "status.hostIP",
        "status.hostIPs",
    }
)
_MAP_PATHS = frozenset({"metadata.labels", "metadata.annotations"})
RESOURCE_NAMES = frozenset(
    f"{kind}.{resource}"
    for kind in ("limits", "requests")
    for resource in ("cpu", "memory", "ephemeral-storage")
)


@dataclass(frozen=True)
class PodFields:
    """The pod fields the downward API can expose."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    node_name: str
    service_account_name: str


@dataclass(frozen=True)
class Resources:
    """A container's `resources`, parsed; requests default to limits as the API server defaults them."""

    limits: Mapping[str, Fraction]
    requests: Mapping[str, Fraction]


@dataclass(frozen=True)
class NodeCapacity:
    """What the downward API reports for a limit the container does not set (the node's allocatable)."""

    cpu: Fraction
    memory: Fraction
    ephemeral_storage: Fraction


def check_field_path(path: str, *, allow_maps: bool) -> None:
    """Raise ValueError naming *path* unless the downward API supports it (whole maps only in volumes)."""
    if path in _SCALAR_PATHS or _SUBSCRIPT.fullmatch(path) or (allow_maps and path in _MAP_PATHS):
        return
    raise ValueError(f"unsupported fieldPath {path!r}")


def field_value(pod: PodFields, path: str) -> str:
    """The string value of the pod field *path*; a missing label or annotation reads as ""."""
    scalars = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account_name,
        "status.podIP": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
        "status.hostIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
    }
    if path in scalars:
        return scalars[path]
    if path == "metadata.labels":
        return format_map(pod.labels)
    if path == "metadata.annotations":
        return format_map(pod.annotations)
    match = _SUBSCRIPT.fullmatch(path)
    if match is None:
        raise ValueError(f"unsupported fieldPath {path!r}")
    source = pod.labels if match["map"] == "labels" else pod.annotations
    return source.get(match["key"], "")


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the downward API writes them to a file: sorted `key="value"` lines."""
    return "\n".join(f"{key}={json.dumps(values[key], ensure_ascii=False)}" for key in sorted(values))


def resource_value(resources: Resources, node: NodeCapacity, resource: str, divisor: Fraction) -> str:
    """The downward API value of *resource* (e.g. "limits.memory") divided by *divisor*, rounded up."""
    kind, _, name = resource.partition(".")
    if resource not in RESOURCE_NAMES:
        raise ValueError(f"unsupported resource {resource!r}")
    if kind == "limits":
        value = resources.limits.get(name, _node_value(node, name))
    else:
        value = resources.requests.get(name, Fraction(0))
    return str(divide_up(value, divisor))


def _node_value(node: NodeCapacity, name: str) -> Fraction:
    return {"cpu": node.cpu, "memory": node.memory, "ephemeral-storage": node.ephemeral_storage}[name]
