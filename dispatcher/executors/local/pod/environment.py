"""What a container's environment holds: its declared env (Kubernetes rules) over a minimal base.

The host's environment is deliberately not inherited: credentials in the runner's own environment
must never reach a pod. Only PATH (this interpreter's directory first), HOME, HOSTNAME, LANG and
whatever the caller passes as `base_env` are there besides what the pod declares.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from dispatcher.domain.quantity import parse_quantity
from dispatcher.executors.local.pod.expansion import expand_with
from dispatcher.executors.local.pod.fields import (
    NodeCapacity,
    PodFields,
    Resources,
    field_value,
    resource_value,
)
from dispatcher.executors.local.pod.model import PodRefs
from dispatcher.executors.local.pod.spec import ContainerSpec

T = TypeVar("T")


@dataclass(frozen=True)
class PodSources:
    """Where a container's env values and volume contents come from."""

    refs: PodRefs
    pod: PodFields
    resources: Mapping[str, Resources]
    """Every container's resources by name: a resourceFieldRef may name another container."""
    node: NodeCapacity


class ContainerConfigError(Exception):
    """The container's configuration cannot be satisfied here (a missing ConfigMap, Secret or key).

    Kubernetes keeps such a container waiting (CreateContainerConfigError); a local run must end,
    so the runner terminates it as ContainerCannotRun with this message.
    """


def base_environment(*, hostname: str, home: Path, base_env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment every container starts from, before its declared env."""
    host_path = os.environ.get("PATH", os.defpath)
    # The interpreter's own directory first: a `python`/`python3` command runs the bucketrun interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), host_path])
    return {"PATH": path, "HOME": str(home), "HOSTNAME": hostname, "LANG": "C.UTF-8", **(base_env or {})}


def declared_environment(container: ContainerSpec, sources: PodSources) -> dict[str, str]:
    """The env the pod declares for *container*: `envFrom` sources in order, then `env` entries in order.

    As in Kubernetes, a later entry overrides an earlier one, and an `env` value may refer with
    `$(VAR)` to anything defined before it. Raises ContainerConfigError when a required ConfigMap,
    Secret or key is missing.
    """
    env: dict[str, str] = {}
    for source in container.env_from:
        env.update(_env_from_source(source, sources.refs))
    for var in container.env:
        name: str = var["name"]
        if "valueFrom" in var:
            value = _value_from(var["valueFrom"], var=name, container=container.name, sources=sources)
            if value is None:
                continue
            env[name] = value
        else:
            env[name] = expand_with(var.get("value", ""), env)
    return env


def _env_from_source(source: Mapping[str, Any], refs: PodRefs) -> dict[str, str]:
    prefix: str = source.get("prefix", "")
    if "configMapRef" in source:
        ref = source["configMapRef"]
        data: Mapping[str, str] | None = refs.config_map(ref["name"])
        kind = "configmap"
    else:
        ref = source["secretRef"]
        secret = refs.secret(ref["name"])
        data = None if secret is None else {key: decode(value) for key, value in secret.items()}
        kind = "secret"
    if data is None:
        if ref.get("optional", False):
            return {}
        raise ContainerConfigError(f"{kind} {ref['name']!r} not found (envFrom)")
    # Keys that cannot be environment variable names are skipped, as the kubelet does.
    return {f"{prefix}{key}": value for key, value in data.items() if "=" not in key and "\0" not in key}


def _value_from(source: Mapping[str, Any], *, var: str, container: str, sources: PodSources) -> str | None:
    if "fieldRef" in source:
        return field_value(sources.pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        target = ref.get("containerName") or container
        if target not in sources.resources:
            raise ContainerConfigError(f"env {var}: resourceFieldRef names unknown container {target!r}")
        divisor = parse_quantity(ref.get("divisor", "1"))
        return resource_value(sources.resources[target], sources.node, ref["resource"], divisor)
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return _key(sources.refs.config_map(ref["name"]), ref, "configmap", var)
    ref = source["secretKeyRef"]
    secret = sources.refs.secret(ref["name"])
    value = _key(secret, ref, "secret", var)
    return None if value is None else decode(value)


def _key(data: Mapping[str, T] | None, ref: Mapping[str, Any], kind: str, var: str) -> T | None:
    optional = bool(ref.get("optional", False))
    if data is None:
        if optional:
            return None
        raise ContainerConfigError(f"env {var}: {kind} {ref['name']!r} not found")
    if ref["key"] not in data:
        if optional:
            return None
        raise ContainerConfigError(f"env {var}: key {ref['key']!r} not found in {kind} {ref['name']!r}")
    return data[ref["key"]]


def decode(value: bytes) -> str:
    """Secret bytes as an environment string; undecodable bytes survive (as os.environ does it)."""
    return value.decode("utf-8", "surrogateescape")


def node_capacity(workdir: Path) -> NodeCapacity:
    """This host as a node: what the downward API reports for limits a container does not set."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    disk = os.statvfs(workdir)
    return NodeCapacity(
        cpu=Fraction(os.cpu_count() or 1),
        memory=Fraction(pages),
        ephemeral_storage=Fraction(disk.f_blocks * disk.f_frsize),
    )
