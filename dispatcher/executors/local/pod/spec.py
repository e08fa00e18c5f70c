"""Read a Pod manifest into a checked, typed plan; reject what the API server would reject.

Only structure is checked here. What depends on the world at run time (a ConfigMap that is
missing, a command that is not installed) is a container failure, decided by the runner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any, Literal

from dispatcher.domain.quantity import parse_quantity
from dispatcher.executors.local.pod.fields import RESOURCE_NAMES, PodFields, Resources, check_field_path
from dispatcher.executors.local.pod.model import PodSpecError

RestartPolicy = Literal["Never", "OnFailure", "Always"]

# Names become directory and file names under the workdir: DNS-1123 labels cannot escape it.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_VALUE_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


@dataclass(frozen=True)
class VolumeMount:
    """One `volumeMounts` entry."""

    volume: str
    mount_path: str
    """Absolute, without a trailing slash."""
    sub_path: str
    sub_path_expr: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    """One container or init container, as far as a local run needs it."""

    name: str
    init: bool
    sidecar: bool
    """An init container with `restartPolicy: Always` (a native sidecar)."""
    command: tuple[str, ...] | None
    """None when the manifest has no command: images are ignored, so there is nothing to run."""
    args: tuple[str, ...]
    env: tuple[Mapping[str, Any], ...]
    env_from: tuple[Mapping[str, Any], ...]
    mounts: tuple[VolumeMount, ...]
    working_dir: str | None
    resources: Resources
    image: str = ""
    """Never pulled (the local runner ignores images); a kubelet that emulates pull failures reads it."""


@dataclass(frozen=True)
class PodPlan:
    """A Pod manifest, checked."""

    fields: PodFields
    hostname: str
    restart_policy: RestartPolicy
    active_deadline_seconds: float | None
    init_containers: tuple[ContainerSpec, ...]
    containers: tuple[ContainerSpec, ...]
    volumes: Mapping[str, Mapping[str, Any]]
    """Volume name to the whole `volumes` entry."""

    def all_containers(self) -> tuple[ContainerSpec, ...]:
        """Init containers, then regular containers, in manifest order."""
        return self.init_containers + self.containers


def parse_pod(pod: Mapping[str, Any]) -> PodPlan:
    """Check *pod* (a full Pod manifest as a dict) and return its plan; PodSpecError names what is wrong."""
    metadata = _mapping(pod.get("metadata"), "metadata")
    spec = _mapping(pod.get("spec"), "spec")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise PodSpecError("metadata.name must be a non-empty string")
    fields = PodFields(
        name=name,
        namespace=_string(metadata.get("namespace", "default"), "metadata.namespace"),
        uid=_string(metadata.get("uid", ""), "metadata.uid"),
        labels=_string_map(metadata.get("labels"), "metadata.labels"),
        annotations=_string_map(metadata.get("annotations"), "metadata.annotations"),
        node_name=_string(spec.get("nodeName", ""), "spec.nodeName"),
        service_account_name=_string(
            spec.get("serviceAccountName", spec.get("serviceAccount", "default")), "spec.serviceAccountName"
        ),
    )
    restart_policy = spec.get("restartPolicy", "Always")
    if restart_policy not in ("Never", "OnFailure", "Always"):
        raise PodSpecError(f"spec.restartPolicy must be Never, OnFailure or Always, got {restart_policy!r}")
    volumes = _volumes(spec.get("volumes"))
    init_containers = _containers(
        spec.get("initContainers"), "spec.initContainers", init=True, volumes=volumes
    )
    containers = _containers(spec.get("containers"), "spec.containers", init=False, volumes=volumes)
    if not containers:
        raise PodSpecError("spec.containers must list at least one container")
    names = [container.name for container in init_containers + containers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PodSpecError(f"container names must be unique in the pod, repeated: {', '.join(duplicates)}")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (
        not isinstance(deadline, int | float) or isinstance(deadline, bool) or deadline <= 0
    ):
        raise PodSpecError(f"spec.activeDeadlineSeconds must be a positive number, got {deadline!r}")
    return PodPlan(
        fields=fields,
        hostname=_string(spec.get("hostname", name), "spec.hostname"),
        restart_policy=restart_policy,
        active_deadline_seconds=None if deadline is None else float(deadline),
        init_containers=init_containers,
        containers=containers,
        volumes=volumes,
    )


def relative_path(value: Any, where: str) -> str:
    """Check that *value* is a relative path that stays inside its directory (no `..`), and return it."""
    path = _string(value, where)
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise PodSpecError(f"{where} must be a relative path without '..', got {path!r}")
    return path


def _volumes(value: Any) -> dict[str, Mapping[str, Any]]:
    volumes: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(_list(value, "spec.volumes")):
        where = f"spec.volumes[{index}]"
        volume = _mapping(entry, where)
        name = _dns_label(volume.get("name"), f"{where}.name")
        if name in volumes:
            raise PodSpecError(f"{where}.name {name!r} is used by another volume")
        for source in ("configMap", "secret", "downwardAPI", "projected"):
            if source in volume:
                _check_volume_items(volume[source], f"{where}.{source}")
        volumes[name] = volume
    return volumes


def _check_volume_items(source: Any, where: str) -> None:
    source = _mapping(source, where)
    for index, entry in enumerate(_list(source.get("items"), f"{where}.items")):
        item = _mapping(entry, f"{where}.items[{index}]")
        relative_path(item.get("path"), f"{where}.items[{index}].path")
        if "fieldRef" in item:
            path = _mapping(item["fieldRef"], f"{where}.items[{index}].fieldRef").get("fieldPath")
            _field_path(path, f"{where}.items[{index}].fieldRef.fieldPath", allow_maps=True)
        if "resourceFieldRef" in item:
            _resource_field_ref(item["resourceFieldRef"], f"{where}.items[{index}].resourceFieldRef")
    for index, entry in enumerate(_list(source.get("sources"), f"{where}.sources")):
        projection = _mapping(entry, f"{where}.sources[{index}]")
        for kind in ("configMap", "secret", "downwardAPI"):
            if kind in projection:
                _check_volume_items(projection[kind], f"{where}.sources[{index}].{kind}")


def _containers(
    value: Any, where: str, *, init: bool, volumes: Mapping[str, Mapping[str, Any]]
) -> tuple[ContainerSpec, ...]:
    return tuple(
        _container(entry, f"{where}[{index}]", init=init, volumes=volumes)
        for index, entry in enumerate(_list(value, where))
    )


def _container(
    value: Any, where: str, *, init: bool, volumes: Mapping[str, Mapping[str, Any]]
) -> ContainerSpec:
    container = _mapping(value, where)
    name = _dns_label(container.get("name"), f"{where}.name")
    where = f"{where} ({name})"
    command = container.get("command")
    restart_policy = container.get("restartPolicy")
    if restart_policy is not None and (not init or restart_policy != "Always"):
        raise PodSpecError(
            f"{where}.restartPolicy may only be 'Always', on an init container; got {restart_policy!r}"
        )
    working_dir = container.get("workingDir")
    return ContainerSpec(
        name=name,
        init=init,
        sidecar=restart_policy == "Always",
        command=None if command is None else _strings(command, f"{where}.command"),
        args=_strings(container.get("args", []), f"{where}.args"),
        env=_env(container.get("env"), f"{where}.env"),
        env_from=_env_from(container.get("envFrom"), f"{where}.envFrom"),
        mounts=_mounts(container.get("volumeMounts"), f"{where}.volumeMounts", volumes),
        working_dir=None if not working_dir else _string(working_dir, f"{where}.workingDir"),
        resources=_resources(container.get("resources"), f"{where}.resources"),
        image=str(container.get("image") or ""),
    )


def _env(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    entries = []
    for index, entry in enumerate(_list(value, where)):
        at = f"{where}[{index}]"
        var = _mapping(entry, at)
        name = _string(var.get("name"), f"{at}.name")
        if not name or "=" in name:
            raise PodSpecError(f"{at}.name must be a non-empty name without '=', got {name!r}")
        if "value" in var and "valueFrom" in var:
            raise PodSpecError(f"{at} ({name}) may set value or valueFrom, not both")
        if "value" in var:
            _string(var["value"], f"{at}.value")
        if "valueFrom" in var:
            _value_from(var["valueFrom"], f"{at} ({name}).valueFrom")
        entries.append(var)
    return tuple(entries)


def _value_from(value: Any, where: str) -> None:
    source = _mapping(value, where)
    kinds = [kind for kind in _ENV_VALUE_SOURCES if kind in source]
    if len(kinds) != 1:
        raise PodSpecError(f"{where} must have exactly one of {', '.join(_ENV_VALUE_SOURCES)}")
    kind = kinds[0]
    ref = _mapping(source[kind], f"{where}.{kind}")
    if kind == "fieldRef":
        _field_path(ref.get("fieldPath"), f"{where}.fieldRef.fieldPath", allow_maps=False)
    elif kind == "resourceFieldRef":
        _resource_field_ref(ref, f"{where}.resourceFieldRef")
    else:
        _string(ref.get("name"), f"{where}.{kind}.name")
        _string(ref.get("key"), f"{where}.{kind}.key")


def _field_path(value: Any, where: str, *, allow_maps: bool) -> None:
    try:
        check_field_path(_string(value, where), allow_maps=allow_maps)
    except ValueError as error:
        raise PodSpecError(f"{where}: {error}") from error


def _resource_field_ref(value: Any, where: str) -> None:
    ref = _mapping(value, where)
    resource = ref.get("resource")
    if resource not in RESOURCE_NAMES:
        raise PodSpecError(
            f"{where}.resource must be one of {', '.join(sorted(RESOURCE_NAMES))}, got {resource!r}"
        )
    if "divisor" in ref:
        divisor = _quantity(ref["divisor"], f"{where}.divisor")
        if divisor <= 0:
            raise PodSpecError(f"{where}.divisor must be positive, got {ref['divisor']!r}")


def _env_from(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    entries = []
    for index, entry in enumerate(_list(value, where)):
        at = f"{where}[{index}]"
        source = _mapping(entry, at)
        kinds = [kind for kind in ("configMapRef", "secretRef") if kind in source]
        if len(kinds) != 1:
            raise PodSpecError(f"{at} must have exactly one of configMapRef, secretRef")
        _string(_mapping(source[kinds[0]], f"{at}.{kinds[0]}").get("name"), f"{at}.{kinds[0]}.name")
        _string(source.get("prefix", ""), f"{at}.prefix")
        entries.append(source)
    return tuple(entries)


def _mounts(value: Any, where: str, volumes: Mapping[str, Mapping[str, Any]]) -> tuple[VolumeMount, ...]:
    mounts = []
    for index, entry in enumerate(_list(value, where)):
        at = f"{where}[{index}]"
        mount = _mapping(entry, at)
        volume = _string(mount.get("name"), f"{at}.name")
        if volume not in volumes:
            raise PodSpecError(f"{at}.name {volume!r} is not a volume of this pod")
        mount_path = _string(mount.get("mountPath"), f"{at}.mountPath").rstrip("/")
        if not mount_path.startswith("/"):
            raise PodSpecError(
                f"{at}.mountPath must be an absolute path other than '/', got {mount.get('mountPath')!r}"
            )
        sub_path = mount.get("subPath", "")
        sub_path_expr = _string(mount.get("subPathExpr", ""), f"{at}.subPathExpr")
        if sub_path and sub_path_expr:
            raise PodSpecError(f"{at} may set subPath or subPathExpr, not both")
        mounts.append(
            VolumeMount(
                volume=volume,
                mount_path=mount_path,
                sub_path=relative_path(sub_path, f"{at}.subPath") if sub_path else "",
                sub_path_expr=sub_path_expr,
                read_only=bool(mount.get("readOnly", False)),
            )
        )
    paths = [mount.mount_path for mount in mounts]
    repeated = sorted({path for path in paths if paths.count(path) > 1})
    if repeated:
        raise PodSpecError(f"{where}: mountPath used more than once: {', '.join(repeated)}")
    return tuple(mounts)


def _resources(value: Any, where: str) -> Resources:
    resources = _mapping(value or {}, where)
    limits = _quantities(resources.get("limits"), f"{where}.limits")
    requests = _quantities(resources.get("requests"), f"{where}.requests")
    return Resources(limits=limits, requests={**limits, **requests})


def _quantities(value: Any, where: str) -> dict[str, Fraction]:
    return {
        str(name): _quantity(amount, f"{where}.{name}")
        for name, amount in _mapping(value or {}, where).items()
    }


def _quantity(value: Any, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PodSpecError(f"{where} must be a quantity, got {value!r}")
    try:
        return parse_quantity(value)
    except ValueError as error:
        raise PodSpecError(f"{where}: {error}") from error


def _dns_label(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise PodSpecError(
            f"{where} must be a DNS-1123 label (lower-case alphanumerics and '-'), got {value!r}"
        )
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PodSpecError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PodSpecError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PodSpecError(f"{where} must be a string, got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(item, str) for item in items):
        raise PodSpecError(f"{where} must be a list of strings, got {value!r}")
    return tuple(items)


def _string_map(value: Any, where: str) -> dict[str, str]:
    mapping = _mapping(value or {}, where)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise PodSpecError(f"{where} values must be strings")
    return {str(k): v for k, v in mapping.items()}
