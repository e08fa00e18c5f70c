"""Checks of rendered manifests that the OpenAPI schema does not express.

kubernetes-validate (strict) catches wrong types, unknown and missing fields; the API server's own
validation also enforces names, label syntax, quantities and Job rules, which the schema cannot.
These run on every render (cheap, pure) so an invalid object is refused with a reason before it
reaches the cluster.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

from dispatcher.domain.quantity import parse_quantity

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_CONFIG_MAP_BYTES = 1024 * 1024


def check_manifest(doc: Mapping[str, Any]) -> list[str]:
    """Problems with *doc* (empty when it is fine); each message names the field and the value."""
    kind = doc.get("kind")
    problems = list(
        _check_metadata(
            doc.get("metadata") or {}, "metadata", name_rule="label" if kind == "Job" else "subdomain"
        )
    )
    if kind == "Job":
        problems += _check_job(doc.get("spec") or {})
    elif kind == "ConfigMap":
        problems += _check_config_map(doc)
    return problems


@functools.lru_cache(maxsize=4096)
def valid_label_key(key: str) -> bool:
    """True for a Kubernetes label/annotation key: optional DNS-1123 subdomain prefix + '/' + name."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return False
    return bool(_LABEL_NAME.fullmatch(name))


def valid_label_value(value: str) -> bool:
    """True for a Kubernetes label value (≤ 63 characters, alphanumeric at both ends)."""
    return bool(_LABEL_VALUE.fullmatch(value))


def _check_metadata(meta: Mapping[str, Any], where: str, *, name_rule: str) -> Iterator[str]:
    name = meta.get("name")
    if name is not None:
        pattern = DNS1123_LABEL if name_rule == "label" else DNS1123_SUBDOMAIN
        if not isinstance(name, str) or not pattern.fullmatch(name):
            yield f"{where}.name {name!r} is not a DNS-1123 {name_rule}"
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not DNS1123_LABEL.fullmatch(namespace)):
        yield f"{where}.namespace {namespace!r} is not a DNS-1123 label"
    for key, value in (meta.get("labels") or {}).items():
        if not valid_label_key(key):
            yield f"{where}.labels key {key!r} is not a valid label key"
        if not isinstance(value, str) or not valid_label_value(value):
            yield f"{where}.labels[{key!r}] value {value!r} is not a valid label value"
    annotations = meta.get("annotations") or {}
    size = 0
    for key, value in annotations.items():
        if not valid_label_key(key):
            yield f"{where}.annotations key {key!r} is not a valid annotation key"
        size += len(key.encode()) + len(str(value).encode("utf-8", "surrogatepass"))
    if size > MAX_ANNOTATIONS_BYTES:
        yield f"{where}.annotations total {size} bytes exceeds {MAX_ANNOTATIONS_BYTES}"


def _check_job(spec: Mapping[str, Any]) -> Iterator[str]:
    template = spec.get("template") or {}
    yield from _check_metadata(
        template.get("metadata") or {}, "spec.template.metadata", name_rule="subdomain"
    )
    pod = template.get("spec") or {}
    policy = pod.get("restartPolicy")
    if policy not in {"Never", "OnFailure"}:
        yield f"spec.template.spec.restartPolicy {policy!r} must be Never or OnFailure for a Job"
    if spec.get("podFailurePolicy") and policy != "Never":
        yield "spec.podFailurePolicy requires restartPolicy Never"
    for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            yield f"spec.{field} {value!r} must be a non-negative integer"
    if spec.get("activeDeadlineSeconds") == 0:
        yield "spec.activeDeadlineSeconds must be positive"
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(group) or []):
            yield from _check_container(container, f"spec.template.spec.{group}[{index}]", volumes, seen)


def _check_container(
    container: Mapping[str, Any], where: str, volumes: set[Any], seen: set[str]
) -> Iterator[str]:
    name = container.get("name")
    if not isinstance(name, str) or not DNS1123_LABEL.fullmatch(name):
        yield f"{where}.name {name!r} is not a DNS-1123 label"
    elif name in seen:
        yield f"{where}.name {name!r} is used by two containers"
    else:
        seen.add(name)
    for kind in ("requests", "limits"):
        for resource, amount in ((container.get("resources") or {}).get(kind) or {}).items():
            try:
                value = _quantity(amount)
            except ValueError:
                yield f"{where}.resources.{kind}[{resource!r}] {amount!r} is not a quantity"
                continue
            if value < 0:
                yield f"{where}.resources.{kind}[{resource!r}] {amount!r} is negative"
    for index, env in enumerate(container.get("env") or []):
        env_name = env.get("name")
        if not isinstance(env_name, str) or not _ENV_NAME.fullmatch(env_name):
            yield f"{where}.env[{index}].name {env_name!r} is not a valid variable name"
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volumes:
            yield f"{where}.volumeMounts {mount.get('name')!r} names no volume of the pod"


def _check_config_map(doc: Mapping[str, Any]) -> Iterator[str]:
    size = 0
    for key, value in (doc.get("data") or {}).items():
        if not _CONFIG_KEY.fullmatch(key):
            yield f"data key {key!r} is not a valid ConfigMap key"
        size += len(key.encode()) + len(str(value).encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_MAP_BYTES:
        yield f"data is {size} bytes, over the {MAX_CONFIG_MAP_BYTES}-byte ConfigMap limit"


@functools.lru_cache(maxsize=1024, typed=True)
def _cached_quantity(amount: Any) -> Any:
    return parse_quantity(amount)


def _quantity(amount: Any) -> Any:
    # A service's few amounts recur in every one of its Jobs: parse each once (Fractions are slow).
    try:
        return _cached_quantity(amount)
    except TypeError:  # unhashable: not a quantity anyway, let parse_quantity say why
        return parse_quantity(amount)
